//! Prints the sizes of the futures a fire site holds, per chain, as Markdown.
//!
//! A separate binary on purpose: building these futures in `dispatch` too
//! would add instantiation sites of the same future types there, which
//! changes LLVM's inlining of the measured loops (see the README).

fn main() {
    println!("| chain | fire future (bytes) | loop future with the gate (bytes) |");
    println!("| --- | ---: | ---: |");
    for (name, fire, looped) in qtasks_benches::future_sizes() {
        println!("| `{name}` | {fire} | {looped} |");
    }
}
