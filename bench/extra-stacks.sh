# Sourced by ../shared/anchors/run-all.sh when copied next to it as
# extra-stacks.sh; PORTCULLIS must point at this repository. Login scenarios
# (d, d1) are not run: the harness posts to the Flask app's /login with its
# seeded user, which Portcullis does not have.
add_stack portcullis "$PORTCULLIS/target/release/portcullis serve --config $PORTCULLIS/bench/anchors.toml" 8300 "a b c"
add_stack portcullis-redis "$PORTCULLIS/target/release/portcullis serve --config $PORTCULLIS/bench/anchors-redis.toml" 8301 "a b c"
