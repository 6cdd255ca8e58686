# Sourced by ../shared/anchors/run-all.sh when copied next to it as
# extra-stacks.sh; PORTCULLIS must point at this repository.
add_stack portcullis "$PORTCULLIS/target/release/portcullis serve --config $PORTCULLIS/bench/anchors.toml" 8300 "a b"
