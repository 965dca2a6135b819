//! `exec`: runs a program as a node, the way to plug an existing script into a workflow.
//!
//! ```yaml
//! retrieve:
//!   kind: exec
//!   timeout: 2s                              # the node's policy: the process group is killed
//!   writes: [rag_results]
//!   with:
//!     command: [python3, examples/retrieval/retrieve.py, "--k", "{{ inputs.k }}"]
//!     env: { RETRIEVAL_INDEX: "{{ inputs.index }}" }
//! ```
//!
//! The program is started from an argument list, never through a shell: each argument is one
//! template rendered to one argument, so nothing in inputs or state is ever shell-interpreted. The
//! node's input goes to the program's standard input as one JSON document, `{"inputs": {..},
//! "state": {..}, "node": "retrieve", "attempt": 1}` (plus `item` and `index` inside a `map`), and
//! the program prints one JSON object of state updates on standard output.
//!
//! The program runs in its own process group. When the node's future is dropped (its timeout, the
//! run's deadline, fail-fast cancellation, Ctrl-C or `SIGTERM` to `braid`) a guard kills the whole
//! group, so a script's children die with it; when the program exits, whatever it left running
//! in its group is killed too: a node leaves nothing behind. On Linux the program also dies if
//! Braid is killed outright (a parent-death signal; see `orphan`). Standard output, standard error and the wait are driven together,
//! so a program writing megabytes never deadlocks on a full pipe.

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use braid_core::registry::parse_params;
use braid_core::{
    BuildContext, BuildError, FailureKind, Node, NodeContext, NodeError, NodeFuture, NodeKind,
    Templated,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Most bytes read from the program's standard output: its update must fit.
pub const MAX_STDOUT: usize = 16 * 1024 * 1024;
/// Most lines of standard error quoted in a failure's message.
pub const STDERR_TAIL_LINES: usize = 20;
/// Most bytes of standard error quoted in a failure's message.
pub const STDERR_TAIL_BYTES: usize = 2048;

/// Parameters of the `exec` kind.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The program and its arguments, such as
    /// `[python3, scripts/retrieve.py, "--k", "{{ inputs.k }}"]`. Never run through a shell: each
    /// entry is one argument, and may be a template (a value that is not a string is passed as
    /// its JSON text). The program is looked up in `PATH` unless it contains a `/`.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// The working directory of the program (a template). Default: Braid's own.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Environment variables to set: name → value (values may be templates).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Whether the program sees Braid's whole environment. With `false` it sees only `env` and the
    /// variables named in `pass_env`. Default: `true`.
    #[serde(default = "yes")]
    pub inherit_env: bool,
    /// With `inherit_env: false`, the variables passed through from Braid's environment, such as
    /// `[PATH, HOME, OPENAI_API_KEY]` (names that are not set are left out).
    #[serde(default)]
    pub pass_env: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The `exec` kind.
#[derive(Debug)]
pub struct ExecKind;

struct Exec {
    command: Vec<Templated>,
    cwd: Option<Templated>,
    env: Vec<(String, Templated)>,
    inherit_env: bool,
    pass_env: Vec<String>,
}

/// A rendered argument or variable: strings as they are, anything else as its JSON text.
fn to_arg(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

impl Exec {
    /// Renders everything the process needs, before anything is started.
    fn prepare(&self, ctx: &NodeContext) -> Result<Prepared, NodeError> {
        let argv = self
            .command
            .iter()
            .map(|t| ctx.render(t).map(to_arg))
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = self
            .cwd
            .as_ref()
            .map(|t| ctx.render(t).map(to_arg))
            .transpose()?;
        // Where the program runs, so that its side effects can be made safe to repeat: a node
        // run again after a crash gets the same `BRAID_IDEMPOTENCY_KEY`. The node's own `env`
        // comes after, and may override them.
        let mut env = vec![
            ("BRAID_RUN_ID".to_owned(), ctx.run_id().to_owned()),
            ("BRAID_NODE".to_owned(), ctx.node().to_owned()),
            ("BRAID_ATTEMPT".to_owned(), ctx.attempt().to_string()),
            ("BRAID_IDEMPOTENCY_KEY".to_owned(), ctx.idempotency_key()),
        ];
        for (k, t) in &self.env {
            env.push((k.clone(), to_arg(ctx.render(t)?)));
        }
        let mut input = Map::new();
        if let Some(Value::Object(vars)) = ctx.vars() {
            input.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        input.insert("inputs".into(), ctx.inputs().clone());
        input.insert("state".into(), ctx.state().clone());
        input.insert("node".into(), Value::String(ctx.node().to_owned()));
        input.insert("attempt".into(), Value::from(ctx.attempt()));
        let stdin = serde_json::to_vec(&Value::Object(input)).map_err(|e| {
            NodeError::new(format!("cannot encode the program's input: {e}")).permanent()
        })?;
        Ok(Prepared {
            argv,
            cwd,
            env,
            stdin,
        })
    }
}

struct Prepared {
    argv: Vec<String>,
    cwd: Option<String>,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
}

impl Node for Exec {
    fn call(&self, ctx: NodeContext) -> NodeFuture {
        let prepared = self.prepare(&ctx);
        let inherit_env = self.inherit_env;
        let pass_env: Vec<(String, std::ffi::OsString)> = if inherit_env {
            Vec::new()
        } else {
            self.pass_env
                .iter()
                .filter_map(|k| std::env::var_os(k).map(|v| (k.clone(), v)))
                .collect()
        };
        Box::pin(async move {
            let p = prepared?;
            let mut cmd = Command::new(&p.argv[0]);
            cmd.args(&p.argv[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            if !inherit_env {
                cmd.env_clear();
                cmd.envs(pass_env);
            }
            cmd.envs(p.env);
            if let Some(dir) = &p.cwd {
                cmd.current_dir(dir);
            }
            run(cmd, &p.argv[0], p.stdin).await
        })
    }
}

/// Kills the program's process group when dropped: the node's future was dropped (timeout,
/// cancellation), or the program exited and left processes behind.
struct GroupGuard {
    #[cfg(unix)]
    pgid: Option<nix::unistd::Pid>,
}

impl GroupGuard {
    fn new(pid: Option<u32>) -> Self {
        #[cfg(unix)]
        {
            let pgid = pid
                .and_then(|p| i32::try_from(p).ok())
                .map(nix::unistd::Pid::from_raw);
            GroupGuard { pgid }
        }
        #[cfg(not(unix))]
        {
            let _ = pid;
            GroupGuard {}
        }
    }

    fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (the group is gone) is the expected outcome when the program left nothing.
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Failed {
    Io(&'static str, std::io::Error),
    TooMuchOutput,
}

/// Spawns the program, feeds its input, collects its output, and turns the result into an update.
async fn run(mut cmd: Command, program: &str, input: Vec<u8>) -> Result<Value, NodeError> {
    #[cfg(unix)]
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    let spawned = orphan::spawn(cmd).await;
    #[cfg(not(target_os = "linux"))]
    let spawned = cmd.spawn();
    let mut child = spawned.map_err(|e| spawn_error(program, &e))?;
    // Declared after `child`, so dropped before it: the group dies first, then tokio reaps the child.
    let mut guard = GroupGuard::new(child.id());
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(NodeError::new(
            "the program's standard streams were not captured",
        ));
    };
    let feed = async move {
        match stdin.write_all(&input).await {
            Ok(()) => {
                let _ = stdin.shutdown().await;
                Ok(())
            }
            // A program that does not read its input may exit before taking all of it.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Failed::Io("write to the standard input of", e)),
        }
    };
    let wait = async {
        let status = child
            .wait()
            .await
            .map_err(|e| Failed::Io("wait for the program", e))?;
        // The program is done: whatever it left running in its group goes too (and its pipes close).
        guard.kill();
        Ok(status)
    };
    let outcome = tokio::try_join!(
        feed,
        read_capped(stdout, MAX_STDOUT),
        read_tail(stderr),
        wait
    );
    let (_, out, err, status) = match outcome {
        Ok(v) => v,
        Err(Failed::TooMuchOutput) => {
            return Err(NodeError::of_kind(
                FailureKind::InvalidOutput,
                format!("`{program}` wrote more than {} MiB to standard output; an update must be smaller", MAX_STDOUT >> 20),
            )
            .permanent());
        }
        Err(Failed::Io(what, e)) => {
            return Err(NodeError::new(format!("cannot {what} `{program}`: {e}")));
        }
    };
    let tail = stderr_tail(&err);
    if !status.success() {
        return Err(NodeError::new(format!(
            "`{program}` {}{}",
            describe(status),
            quote(&tail)
        )));
    }
    // A large update is parsed off the run's task (its other nodes go on meanwhile).
    let program = program.to_owned();
    crate::offload::parse(out, move |out| parse_update(&program, out, &tail)).await
}

/// On Linux, a program dies with Braid even when Braid is killed outright (`SIGKILL`, the OOM
/// killer), which runs no guard: it is started with a parent-death signal (`PR_SET_PDEATHSIG`,
/// `SIGKILL`).
///
/// The kernel sends that signal when the *thread* that forked the child exits, not the process.
/// Tokio's blocking threads exit after a while idle, and a runtime's workers when it shuts down,
/// so a program forked from one of them would be killed while Braid lives on. Programs are
/// therefore forked from one thread that lives as long as the process ([`spawn`]). In the child,
/// after setting the signal, the parent's pid is checked: if Braid died between the fork and
/// the `prctl`, the child would never get the signal, so it exits at once.
///
/// Elsewhere (macOS, the BSDs) there is no such signal: a program outlives a Braid killed with
/// `SIGKILL` (any other end of Braid kills its process group, as on Linux). Either way only the
/// program itself gets the signal; processes it started are in its process group, which a
/// supervisor can kill (`kill -- -PGID`).
#[cfg(target_os = "linux")]
mod orphan {
    use std::io;
    use std::sync::{OnceLock, mpsc};

    use tokio::process::{Child, Command};

    type Job = Box<dyn FnOnce() + Send>;

    /// The spawning thread's queue: `None` if the thread could not be started (then programs are
    /// spawned where their node runs). Unbounded because each node waits for its own job, so it
    /// holds at most one job per node in flight.
    static JOBS: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

    fn jobs() -> Option<&'static mpsc::Sender<Job>> {
        JOBS.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("braid-exec-spawner".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
    }

    /// Spawns `cmd` (with its parent-death signal) from the spawning thread, inside the caller's
    /// runtime. Must be called from a tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// If the caller stops waiting, a child spawned anyway is killed with its process group.
    pub(super) async fn spawn(mut cmd: Command) -> io::Result<Child> {
        let parent = nix::unistd::getpid();
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before `exec`, where only
        // async-signal-safe calls are allowed: `prctl` and `getppid` are plain system calls,
        // and the error is built from an errno without allocating.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(io::Error::from)?;
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from(nix::errno::Errno::ESRCH));
                }
                Ok(())
            });
        }
        let handle = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _runtime = handle.enter();
            if let Err(Ok(child)) = tx.send(cmd.spawn()) {
                super::GroupGuard::new(child.id()).kill();
            }
        });
        match jobs() {
            Some(queue) => {
                if let Err(mpsc::SendError(job)) = queue.send(job) {
                    job();
                }
            }
            None => job(),
        }
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("the program was not spawned")))
    }
}

fn spawn_error(program: &str, e: &std::io::Error) -> NodeError {
    match e.kind() {
        std::io::ErrorKind::NotFound => NodeError::new(format!(
            "cannot start `{program}`: program not found (or the `cwd` does not exist)"
        ))
        .permanent(),
        std::io::ErrorKind::PermissionDenied => {
            NodeError::new(format!("cannot start `{program}`: permission denied")).permanent()
        }
        _ => NodeError::new(format!("cannot start `{program}`: {e}")),
    }
}

fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown");
            return format!("was killed by signal {sig} ({name})");
        }
    }
    format!("ended with {status}")
}

fn quote(tail: &str) -> String {
    if tail.is_empty() {
        "; its standard error was empty".to_owned()
    } else {
        format!("; standard error ends with:\n{tail}")
    }
}

/// Parses standard output as one JSON object (surrounding whitespace allowed).
fn parse_update(program: &str, out: &[u8], tail: &str) -> Result<Value, NodeError> {
    let invalid = |m: String| {
        NodeError::of_kind(FailureKind::InvalidOutput, format!("{m}{}", quote(tail))).permanent()
    };
    let text = String::from_utf8_lossy(out);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid(format!(
            "`{program}` printed nothing; it must print one JSON object of updates (`{{}}` for none)"
        )));
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(invalid(format!(
            "`{program}` printed {}, not a JSON object of updates",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                _ => "a list",
            }
        ))),
        Err(e) => {
            let start: String = trimmed.chars().take(200).collect();
            Err(invalid(format!(
                "`{program}` printed output that is not one JSON object ({e}): `{start}`"
            )))
        }
    }
}

async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> Result<Vec<u8>, Failed> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| Failed::Io("read the standard output of", e))?;
        if n == 0 {
            return Ok(buf);
        }
        if buf.len() + n > cap {
            return Err(Failed::TooMuchOutput);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads standard error to its end, keeping only the last 64 KiB.
async fn read_tail(mut r: impl AsyncRead + Unpin) -> Result<Vec<u8>, Failed> {
    const KEEP: usize = 64 * 1024;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = r
            .read(&mut chunk)
            .await
            .map_err(|e| Failed::Io("read the standard error of", e))?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * KEEP {
            buf.drain(..buf.len() - KEEP);
        }
    }
}

/// The last [`STDERR_TAIL_LINES`] lines of standard error, at most [`STDERR_TAIL_BYTES`] bytes.
fn stderr_tail(err: &[u8]) -> String {
    let text = String::from_utf8_lossy(err);
    let text = text.trim_end();
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
    if tail.len() > STDERR_TAIL_BYTES {
        let mut cut = tail.len() - STDERR_TAIL_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = format!("…{}", &tail[cut..]);
    }
    tail
}

impl NodeKind for ExecKind {
    fn name(&self) -> &str {
        "exec"
    }
    fn description(&self) -> &str {
        "Runs a program (no shell): JSON input on stdin, one JSON object of updates on stdout."
    }
    fn params_schema(&self, generator: &mut SchemaGenerator) -> Option<Schema> {
        Some(generator.subschema_for::<ExecParams>())
    }
    fn build(
        &self,
        params: Option<&Value>,
        cx: &mut BuildContext<'_>,
    ) -> Result<Arc<dyn Node>, BuildError> {
        let p: ExecParams = parse_params(params)?;
        if p.command.first().is_none_or(|c| c.is_empty()) {
            return Err(BuildError::params(
                "/command",
                "`command` needs at least the program to run",
            ));
        }
        if p.inherit_env && !p.pass_env.is_empty() {
            return Err(BuildError::params(
                "/pass_env",
                "`pass_env` only applies with `inherit_env: false` (otherwise every variable is passed)",
            ));
        }
        for (i, name) in p.pass_env.iter().chain(p.env.keys()).enumerate() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                let at = if i < p.pass_env.len() {
                    format!("/pass_env/{i}")
                } else {
                    "/env".to_owned()
                };
                return Err(BuildError::params(
                    at,
                    format!("`{name}` is not a valid environment variable name"),
                ));
            }
        }
        let command = p
            .command
            .iter()
            .enumerate()
            .map(|(i, a)| cx.templated(&format!("/command/{i}"), &Value::String(a.clone())))
            .collect();
        let cwd = p
            .cwd
            .as_ref()
            .map(|c| cx.templated("/cwd", &Value::String(c.clone())));
        let env = p
            .env
            .iter()
            .map(|(k, v)| {
                let ptr = format!("/env/{}", k.replace('~', "~0").replace('/', "~1"));
                (k.clone(), cx.templated(&ptr, &Value::String(v.clone())))
            })
            .collect();
        Ok(Arc::new(Exec {
            command,
            cwd,
            env,
            inherit_env: p.inherit_env,
            pass_env: p.pass_env,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_lines_and_bytes() {
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = stderr_tail(many.as_bytes());
        assert!(tail.starts_with("line 80\n"), "{tail}");
        assert!(tail.ends_with("line 99"), "{tail}");
        let long = "é".repeat(5000);
        let tail = stderr_tail(long.as_bytes());
        assert!(
            tail.len() <= STDERR_TAIL_BYTES + "…".len(),
            "{}",
            tail.len()
        );
        assert!(tail.starts_with('…'));
    }

    /// The parent-death signal fires when the thread that forked the child exits: a program
    /// asked for by a thread that then ends must live on (it is forked by the long-lived
    /// spawning thread), and die only when it is killed.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_program_outlives_the_thread_that_asked_for_it() {
        let pid = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut cmd = Command::new("sleep");
                cmd.arg("60");
                cmd.process_group(0);
                let child = orphan::spawn(cmd).await.expect("sleep starts");
                child.id().expect("a pid")
            })
        })
        .join()
        .expect("the thread ends");
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z'))
            })
        };
        // The signal is sent as the thread exits; give a wrongly killed child time to show it.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let alive = running();
        GroupGuard::new(Some(pid)).kill();
        assert!(alive, "the program died with the thread that asked for it");
    }

    #[test]
    fn output_must_be_one_object() {
        assert!(parse_update("p", b" {\"a\": 1}\n", "").is_ok());
        let e = parse_update("p", b"[1]", "").unwrap_err();
        assert_eq!((e.kind, e.retryable), (FailureKind::InvalidOutput, false));
        let e = parse_update("p", b"{} {}", "").unwrap_err();
        assert_eq!(e.kind, FailureKind::InvalidOutput);
        let e = parse_update("p", b"", "").unwrap_err();
        assert!(e.message.contains("printed nothing"), "{}", e.message);
    }
}
