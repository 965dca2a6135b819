//! `mock`: stands in for a service that does not exist yet, or misbehaves on purpose.
//!
//! It is how a flow is designed before the real services exist, how the seed workflows demo the
//! speedup anywhere, and how the scheduler's tests drive every failure path:
//!
//! ```yaml
//! rag:
//!   kind: mock
//!   writes: [rag_results]
//!   with:
//!     latency: 500ms                      # or { p50: 400ms, p95: 900ms }: lognormal, seeded
//!     output: { rag_results: [{ doc: guide.pdf }] }
//!     fail_first: 1                       # the first attempt fails, the retry succeeds
//! ```
//!
//! Randomness (sampled latency, `fail_rate`) comes from the run's seed, so a run replays exactly.

use std::sync::Arc;
use std::time::Duration;

use braid_core::registry::{duration_param, parse_params};
use braid_core::rng::Rng;
use braid_core::{
    BuildContext, BuildError, FailureKind, Node, NodeContext, NodeError, NodeFuture, NodeKind,
    Templated,
};
use braid_spec::DurationSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{Map, Value};

/// How long each attempt of a mock takes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Latency {
    /// Always this long, such as `500ms`.
    Fixed(DurationSpec),
    /// Sampled from a lognormal distribution with this median and 95th percentile.
    Sampled(SampledLatency),
}

/// A lognormal latency given by two percentiles.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SampledLatency {
    /// The median latency.
    pub p50: DurationSpec,
    /// The 95th-percentile latency (at least `p50`).
    pub p95: DurationSpec,
}

/// Parameters of the `mock` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MockParams {
    /// How long each attempt takes: a duration (`500ms`) or `{ p50, p95 }` for a seeded lognormal
    /// sample. Default: no latency.
    #[serde(default)]
    pub latency: Option<Latency>,
    /// The update the node returns: key → value. Strings may be templates; a string that is
    /// exactly one `{{ expression }}` keeps the expression's type. Default: `{}`.
    #[serde(default)]
    pub output: Option<Map<String, Value>>,
    /// Return this value as the whole update instead of `output`, to test what the runtime does
    /// with garbage (a string, a list, undeclared keys).
    #[serde(default)]
    pub raw_output: Option<Value>,
    /// Fail the first this-many attempts (after their latency), then succeed: for retry tests.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub fail_first: u32,
    /// Fail each attempt with this probability, from the run's seed.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fail_rate: f64,
    /// The message of scripted failures.
    #[serde(default)]
    pub error: Option<String>,
    /// Panic (after the latency) instead of returning.
    #[serde(default)]
    pub panic: bool,
    /// Never finish: only a timeout or cancellation ends the attempt.
    #[serde(default)]
    pub hang: bool,
}

/// The `mock` kind.
#[derive(Debug)]
pub struct MockKind;

#[derive(Debug, Clone, Copy)]
enum Delay {
    None,
    Fixed(Duration),
    LogNormal { mu: f64, sigma: f64 },
}

struct Mock {
    delay: Delay,
    output: Templated,
    fail_first: u32,
    fail_rate: f64,
    error: Arc<str>,
    panic: bool,
    hang: bool,
}

impl Mock {
    fn sample(&self, rng: &mut Rng) -> Duration {
        match self.delay {
            Delay::None => Duration::ZERO,
            Delay::Fixed(d) => d,
            Delay::LogNormal { mu, sigma } => {
                let secs = (mu + sigma * rng.next_normal()).exp();
                Duration::try_from_secs_f64(secs.min(86_400.0)).unwrap_or(Duration::ZERO)
            }
        }
    }
}

impl Node for Mock {
    fn is_instant(&self) -> bool {
        matches!(self.delay, Delay::None) && !self.hang
    }
    fn call(&self, ctx: NodeContext) -> NodeFuture {
        let mut rng = Rng::derive(ctx.seed(), &[u64::from(ctx.attempt())]);
        let delay = self.sample(&mut rng);
        let fail = ctx.attempt() <= self.fail_first
            || (self.fail_rate > 0.0 && rng.next_f64() < self.fail_rate);
        // Render now: the context is this attempt's, and rendering needs no waiting.
        let result = if fail {
            Err(NodeError::of_kind(
                FailureKind::Error,
                self.error.to_string(),
            ))
        } else {
            ctx.render(&self.output)
        };
        let (panic, hang) = (self.panic, self.hang);
        let node = if panic {
            ctx.node().to_owned()
        } else {
            String::new()
        };
        Box::pin(async move {
            if !delay.is_zero() {
                precise_sleep(delay).await;
            }
            if hang {
                std::future::pending::<()>().await;
            }
            if panic {
                panic!("mock node `{node}` panicked, as scripted");
            }
            result
        })
    }
}

/// Sleeps for `d`, ending as close to `d` as tokio's millisecond timer allows.
///
/// Tokio rounds every deadline *up* to its next millisecond tick, and the wake-up itself comes a
/// fraction of a millisecond after the tick, so a plain `sleep(d)` ends up to ~2 ms late, and
/// along a chain of mocks the lateness adds up (the seed workflow's three-node critical path ended
/// 3–5 ms late). Aiming 0.9 ms early centres the end on `d` (measured: each mock within ±1 ms, the
/// seed workflow at +1.3 to +2.4 ms in release); on a paused (virtual) clock, where every instant
/// is a whole tick, the deadline still rounds up to exactly `d`.
async fn precise_sleep(d: Duration) {
    let aim = d.saturating_sub(Duration::from_micros(900));
    tokio::time::sleep_until(tokio::time::Instant::now() + aim).await;
}

impl NodeKind for MockKind {
    fn name(&self) -> &str {
        "mock"
    }
    fn description(&self) -> &str {
        "Stands in for a service: latency, templated output, scripted failures."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<MockParams>())
    }
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p: MockParams = parse_params(params)?;
        let delay = match &p.latency {
            None => Delay::None,
            Some(Latency::Fixed(d)) => Delay::Fixed(duration_param("/latency", d)?),
            Some(Latency::Sampled(s)) => {
                let p50 = duration_param("/latency/p50", &s.p50)?.as_secs_f64();
                let p95 = duration_param("/latency/p95", &s.p95)?.as_secs_f64();
                if p50 <= 0.0 || p95 < p50 {
                    return Err(BuildError::params(
                        "/latency",
                        "`p95` must be at least `p50`, and `p50` above zero",
                    ));
                }
                // p95 = exp(mu + 1.6449 sigma) for a lognormal with median exp(mu).
                Delay::LogNormal {
                    mu: p50.ln(),
                    sigma: (p95.ln() - p50.ln()) / 1.644_853_6,
                }
            }
        };
        if !(0.0..=1.0).contains(&p.fail_rate) {
            return Err(BuildError::params(
                "/fail_rate",
                "`fail_rate` is a probability, from 0 to 1",
            ));
        }
        let output = match (&p.raw_output, p.output) {
            (Some(raw), _) => Templated::Literal(raw.clone()),
            (None, Some(out)) => cx.templated("/output", &Value::Object(out)),
            (None, None) => Templated::Literal(Value::Object(Map::new())),
        };
        let error = p.error.unwrap_or_else(|| "scripted failure".to_owned());
        Ok(Arc::new(Mock {
            delay,
            output,
            fail_first: p.fail_first,
            fail_rate: p.fail_rate,
            error: error.into(),
            panic: p.panic,
            hang: p.hang,
        }))
    }
}

#[cfg(test)]
mod tests {
    use braid_core::TemplateEnv;
    use serde_json::json;

    use super::*;

    #[test]
    fn sampled_latency_has_the_given_median() {
        let mut env = TemplateEnv::new();
        let mut cx = BuildContext::new(&mut env, "/with");
        let params = json!({ "latency": { "p50": "100ms", "p95": "300ms" } });
        let p: MockParams = parse_params(Some(&params)).unwrap();
        let Some(Latency::Sampled(_)) = p.latency else {
            panic!("sampled")
        };
        let _ = MockKind.build(Some(&params), &mut cx).unwrap();
        let mock = Mock {
            delay: Delay::LogNormal {
                mu: 0.1f64.ln(),
                sigma: (3.0f64).ln() / 1.644_853_6,
            },
            output: Templated::Literal(json!({})),
            fail_first: 0,
            fail_rate: 0.0,
            error: "x".into(),
            panic: false,
            hang: false,
        };
        let mut rng = Rng::new(42);
        let mut samples: Vec<f64> = (0..20_001)
            .map(|_| mock.sample(&mut rng).as_secs_f64())
            .collect();
        samples.sort_by(f64::total_cmp);
        let (p50, p95) = (samples[10_000], samples[19_000]);
        assert!((p50 - 0.1).abs() < 0.005, "p50 {p50}");
        assert!((p95 - 0.3).abs() < 0.02, "p95 {p95}");
    }

    #[test]
    fn bad_percentiles_are_a_params_error() {
        let mut env = TemplateEnv::new();
        let mut cx = BuildContext::new(&mut env, "/with");
        let params = json!({ "latency": { "p50": "300ms", "p95": "100ms" } });
        let err = MockKind.build(Some(&params), &mut cx).err().unwrap();
        assert_eq!(err.pointer, "/latency");
    }
}
