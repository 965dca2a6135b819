//! Runs zero-latency mode 1 many times on a current-thread runtime, for profiling the runtime:
//! `cargo build --release -p braid --example profile_mode1` then
//! `valgrind --tool=callgrind target/release/examples/profile_mode1 2000`.

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let text = include_str!("../../../workflows/mode1-manual.yaml")
        .lines()
        .filter(|l| !l.trim_start().starts_with("latency:"))
        .collect::<Vec<_>>()
        .join("\n");
    let wf = braid::Engine::new()
        .load_str("mode1.yaml", &text)
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let start = std::time::Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            let r = wf
                .run(serde_json::json!({}), braid::RunOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.status, braid::RunStatus::Succeeded);
        }
    });
    let took = start.elapsed();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{n} runs in {took:?}: {:.1} µs per run",
            took.as_secs_f64() * 1e6 / n as f64
        );
    }
}
