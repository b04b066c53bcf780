//! `fuzz-parsers [EXECUTIONS] [SEED]`: runs every fuzz target of
//! `billing_tests::fuzz` (default 10 000 000 executions each, seed 1), prints a
//! table, keeps any crashing input under `.run/fuzz/` and exits 1 if there was one.

use billing_tests::fuzz::{TARGETS, run};

#[allow(clippy::print_stdout)] // the table is the program's output
fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let executions: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000_000);
    let seed: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1);
    // Panics are what we look for: keep their messages out of the table.
    std::panic::set_hook(Box::new(|_| {}));
    println!("| target | executions | panics | seconds | executions/s |");
    println!("|---|---|---|---|---|");
    let mut crashed = false;
    for target in &TARGETS {
        let round = run(target, executions, seed);
        println!(
            "| {} | {} | {} | {:.1} | {:.0} |",
            round.name,
            round.executions,
            round.crashes.len(),
            round.seconds,
            round.executions as f64 / round.seconds.max(1e-9)
        );
        for (i, input) in round.crashes.iter().enumerate().take(20) {
            std::fs::create_dir_all(".run/fuzz")?;
            std::fs::write(format!(".run/fuzz/{}-{i}.bin", round.name), input)?;
        }
        crashed |= !round.crashes.is_empty();
    }
    if crashed {
        println!("crashing inputs are in .run/fuzz/: each becomes a regression test");
        std::process::exit(1);
    }
    Ok(())
}
