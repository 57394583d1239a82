//! Compile errors users can hit, pinned with trybuild and grouped by kind of
//! mistake (`ui/<macro>/fail/<category>/`). Regenerate the `.stderr` files
//! with `TRYBUILD=overwrite cargo test -p qtasks-tests --test ui` and review
//! the diff like code.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/*/pass/*.rs");
    t.compile_fail("ui/*/fail/*/*.rs");
}
