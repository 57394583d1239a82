//! Fires one trigger N times in one scenario, for callgrind.
//!
//! ```text
//! dispatch <scenario> <iterations>
//! dispatch --list
//! ```
//!
//! The measured loop is `qtasks_benches::scenario_<scenario>`; count only it
//! with `valgrind --tool=callgrind --toggle-collect='*scenario_<scenario>*'`.

use qtasks_benches::{Bench, SCENARIOS};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--list" => {
            for name in SCENARIOS {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        [name, n] => {
            let Ok(n) = n.parse::<u64>() else {
                eprintln!("dispatch: the iteration count must be a number, not `{n}`");
                return ExitCode::from(2);
            };
            let bench = Bench::default();
            if bench.run(name, n) {
                ExitCode::SUCCESS
            } else {
                eprintln!("dispatch: unknown scenario `{name}`; one of: {}", SCENARIOS.join(", "));
                ExitCode::from(2)
            }
        }
        _ => {
            eprintln!("usage: dispatch <scenario> <iterations> | dispatch --list");
            ExitCode::from(2)
        }
    }
}
