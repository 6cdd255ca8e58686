# Sourced by ../shared/anchors/run-all.sh when copied next to it as
# extra-stacks.sh; PORTCULLIS must point at this repository.
# bench/anchors-start.sh creates the harness's login user (alice) and serves.
# The Redis row runs the proxied scenarios only (its logins are the same).
add_stack portcullis "$PORTCULLIS/bench/anchors-start.sh $PORTCULLIS/bench/anchors.toml" 8300 "a b c d1 d"
add_stack portcullis-redis "$PORTCULLIS/bench/anchors-start.sh $PORTCULLIS/bench/anchors-redis.toml" 8301 "a b c"
