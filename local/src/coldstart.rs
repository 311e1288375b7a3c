//! Cold start, memory, size and warm CPU of the **release** Lambda binaries, each run as Lambda
//! runs it: a process started with the Lambda environment that polls a Runtime API — here a
//! local one ([`RuntimeApi`]) that hands out events, records when each request arrives and
//! reads the process's peak RSS and CPU time from `/proc` at that moment. AWS calls go to
//! emulated AWS (the functions get `AWS_ENDPOINT_URL`), so the first one is real but local.
//!
//! Every function is measured against `bench/hello-lambda` (lambda_runtime + tokio, an echo
//! handler) built with the same release profile and started in the same run, interleaved.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The hello-world reference binary (crate `bench/hello-lambda`).
pub const HELLO: &str = "hello-lambda";
/// The second reference: hello-world plus the AWS SDK, one DynamoDB call per event (crate
/// `bench/hello-sdk`): the floor for any function that calls AWS through the Rust SDK.
pub const HELLO_SDK: &str = "hello-sdk";

/// Whether a binary is one of the references rather than a kanaria function.
pub fn is_reference(name: &str) -> bool {
    name == HELLO || name == HELLO_SDK
}

/// The CA bundle the functions are deployed with (template.yaml `Globals`: `SSL_CERT_FILE`, the
/// bundle of Lambda's provided.al2023), or this machine's equivalent when it has no such file.
pub fn deployed_ca_bundle() -> Option<PathBuf> {
    ["/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/certs/ca-certificates.crt"].iter().map(PathBuf::from).find(|p| p.is_file())
}

/// What the Runtime API saw, in order.
#[derive(Debug, Clone)]
pub struct Mark {
    pub at: Instant,
    pub kind: MarkKind,
    /// The process's peak RSS so far (`VmHWM`), in KiB, read when the request arrived.
    pub hwm_kb: u64,
    /// The process's CPU time so far (user + system, all threads), in clock ticks.
    pub cpu_ticks: u64,
    /// The CPU time of its live threads so far, in nanoseconds ([`cpu_ns`]).
    pub cpu_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkKind {
    /// `GET /runtime/invocation/next`
    Next,
    /// `POST /runtime/invocation/{id}/response`
    Response,
    /// `POST /runtime/invocation/{id}/error`, with its `errorType`
    Error(String),
    /// `POST /runtime/init/error`
    InitError(String),
}

struct ApiState {
    pid: Mutex<Option<u32>>,
    events: Mutex<VecDeque<Value>>,
    marks: Mutex<Vec<Mark>>,
    changed: watch::Sender<usize>,
    function_name: String,
    served: Mutex<u64>,
}

/// A local Lambda Runtime API for one process: serves `events` in order, then holds the next
/// `GET /invocation/next` open (as Lambda does between invocations) until dropped.
pub struct RuntimeApi {
    pub addr: std::net::SocketAddr,
    state: Arc<ApiState>,
    _server: JoinSet<()>,
}

impl RuntimeApi {
    pub async fn start(function_name: &str, events: Vec<Value>) -> Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (changed, _) = watch::channel(0);
        let state = Arc::new(ApiState {
            pid: Mutex::new(None),
            events: Mutex::new(events.into()),
            marks: Mutex::new(Vec::new()),
            changed,
            function_name: function_name.to_string(),
            served: Mutex::new(0),
        });
        let mut server = JoinSet::new();
        let s = state.clone();
        server.spawn(async move {
            // Connections live in this set: dropping the server aborts them, held GETs included.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let s = s.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(route(req, &s).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(RuntimeApi { addr, state, _server: server })
    }

    pub fn set_pid(&self, pid: u32) {
        *self.state.pid.lock().expect("pid") = Some(pid);
    }

    pub fn marks(&self) -> Vec<Mark> {
        self.state.marks.lock().expect("marks").clone()
    }

    /// Wait until `n` requests of kind `Next` have arrived (or an init error).
    pub async fn wait_for_nexts(&self, n: usize, timeout: Duration) -> Result<Vec<Mark>> {
        let mut rx = self.state.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let marks = self.marks();
            if let Some(Mark { kind: MarkKind::InitError(e), .. }) = marks.iter().find(|m| matches!(m.kind, MarkKind::InitError(_))) {
                bail!("{} failed to initialise: {e}", self.state.function_name);
            }
            if marks.iter().filter(|m| m.kind == MarkKind::Next).count() >= n {
                return Ok(marks);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                bail!("{}: timed out after {timeout:?} waiting for request {n} to the Runtime API", self.state.function_name);
            }
        }
    }
}

fn mark(state: &ApiState, kind: MarkKind) {
    let at = Instant::now();
    let pid = *state.pid.lock().expect("pid");
    let (hwm_kb, cpu_ticks, cpu_ns) = pid.map(|p| (peak_rss_kb(p), cpu_ticks(p), cpu_ns(p))).unwrap_or((0, 0, 0));
    let mut marks = state.marks.lock().expect("marks");
    marks.push(Mark { at, kind, hwm_kb, cpu_ticks, cpu_ns });
    let n = marks.len();
    drop(marks);
    state.changed.send_replace(n);
}

async fn route(req: Request<Incoming>, state: &Arc<ApiState>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let error_type =
        || serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["errorType"].as_str().map(str::to_string)).unwrap_or_default();
    match (method, path.as_str()) {
        (Method::GET, "/2018-06-01/runtime/invocation/next") => {
            mark(state, MarkKind::Next);
            let next = state.events.lock().expect("events").pop_front();
            let Some(event) = next else {
                // Nothing more to hand out: hold the request, as Lambda does while frozen.
                std::future::pending::<()>().await;
                unreachable!()
            };
            let id = {
                let mut served = state.served.lock().expect("served");
                *served += 1;
                format!("bench-{:08}", *served)
            };
            let deadline_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64 + 900_000;
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .header("lambda-runtime-aws-request-id", id)
                .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
                .header("lambda-runtime-invoked-function-arn", crate::function_arn(&state.function_name))
                .header("lambda-runtime-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0")
                .body(Full::new(Bytes::from(event.to_string())))
                .expect("static response")
        }
        (Method::POST, "/2018-06-01/runtime/init/error") => {
            mark(state, MarkKind::InitError(error_type()));
            accepted()
        }
        (Method::POST, p) if p.ends_with("/response") => {
            mark(state, MarkKind::Response);
            accepted()
        }
        (Method::POST, p) if p.ends_with("/error") => {
            mark(state, MarkKind::Error(error_type()));
            accepted()
        }
        _ => Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new())).expect("static response"),
    }
}

fn accepted() -> Response<Full<Bytes>> {
    Response::builder().status(StatusCode::ACCEPTED).body(Full::new(Bytes::from_static(b"{\"status\":\"OK\"}"))).expect("static response")
}

/// `VmHWM` of a process (peak resident set), in KiB.
pub fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// User + system CPU time of a process (all its threads, live or exited), in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 0, utime 11, stime 12.
    fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Clock ticks per second for /proc CPU times (USER_HZ; 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time of a process's live threads, in nanoseconds (`/proc/PID/task/*/schedstat`): finer
/// than the clock ticks of `/proc/PID/stat`, but a thread that has exited no longer counts.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// A function binary and the event it is started with.
#[derive(Debug, Clone)]
pub struct Binary {
    pub name: String,
    pub path: PathBuf,
    /// Its sample event, and what it exercises (for the report).
    pub event: Value,
    pub event_note: String,
}

/// How a function process is started: Lambda's environment, AWS pointed at emulated AWS.
#[derive(Debug, Clone)]
pub struct Launch {
    pub endpoint: String,
    pub extra_env: Vec<(String, String)>,
    pub log: PathBuf,
}

async fn spawn(binary: &Binary, api: &RuntimeApi, launch: &Launch) -> Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&launch.log)?;
    let mut cmd = tokio::process::Command::new(&binary.path);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", &binary.name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", binary.name))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2025/01/01/[$LATEST]bench")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        .env("LAMBDA_TASK_ROOT", "/var/task")
        .env("_HANDLER", "bootstrap")
        .env("TZ", ":UTC")
        .env("LANG", "en_US.UTF-8")
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("AWS_REGION", crate::REGION)
        .env("AWS_DEFAULT_REGION", crate::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_SESSION_TOKEN", "test")
        .env("AWS_ENDPOINT_URL", &launch.endpoint)
        // Their AWS calls are counted by the front server (see server::FUNCTION_API_CALLS).
        .env("AWS_SDK_UA_APP_ID", crate::server::FUNCTION_APP_NAME)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    for (k, v) in &launch.extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().with_context(|| format!("starting {}", binary.path.display()))
}

/// One start of one binary: two invocations of its sample event (the first cold, the second
/// warm).
#[derive(Debug, Clone)]
pub struct Start {
    /// exec → first `GET /invocation/next` (init done)
    pub to_first_next_ms: f64,
    /// exec → first response (or error) posted
    pub to_first_response_ms: f64,
    /// first invocation: its event handed out → its result posted (includes the first AWS call)
    pub first_invoke_ms: f64,
    /// second invocation of the same event
    pub warm_invoke_ms: f64,
    /// peak RSS at the first `GET /next` (after init), KiB
    pub hwm_init_kb: u64,
    /// peak RSS at the second `GET /next` (after handling the sample event), KiB
    pub hwm_after_event_kb: u64,
    /// "response" or the error type the first invocation returned
    pub outcome: String,
}

pub async fn start_once(binary: &Binary, launch: &Launch) -> Result<Start> {
    let api = RuntimeApi::start(&binary.name, vec![binary.event.clone(), binary.event.clone()]).await?;
    let t0 = Instant::now();
    let mut child = spawn(binary, &api, launch).await?;
    api.set_pid(child.id().unwrap_or(0));
    let result = api.wait_for_nexts(3, Duration::from_secs(30)).await;
    let _ = child.kill().await;
    let marks = result?;
    let nexts: Vec<&Mark> = marks.iter().filter(|m| m.kind == MarkKind::Next).collect();
    let results: Vec<&Mark> = marks.iter().filter(|m| matches!(m.kind, MarkKind::Response | MarkKind::Error(_))).collect();
    if results.len() < 2 {
        bail!("{}: expected two results, saw {marks:?}", binary.name);
    }
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1000.0;
    Ok(Start {
        to_first_next_ms: ms(t0, nexts[0].at),
        to_first_response_ms: ms(t0, results[0].at),
        first_invoke_ms: ms(nexts[0].at, results[0].at),
        warm_invoke_ms: ms(nexts[1].at, results[1].at),
        hwm_init_kb: nexts[0].hwm_kb,
        hwm_after_event_kb: nexts[1].hwm_kb,
        outcome: match &results[0].kind {
            MarkKind::Error(t) => format!("error {t}"),
            _ => "response".into(),
        },
    })
}

/// `starts` measured starts of every binary, interleaved (one of each in turn, so drift in the
/// machine's load affects them alike), after one unmeasured start each (page cache).
pub async fn cold_starts(binaries: &[Binary], launch: &Launch, starts: usize) -> Result<Vec<(Binary, Vec<Start>)>> {
    for b in binaries {
        start_once(b, launch).await?;
    }
    let mut out: Vec<(Binary, Vec<Start>)> = binaries.iter().map(|b| (b.clone(), Vec::new())).collect();
    for _ in 0..starts {
        for (b, samples) in out.iter_mut() {
            samples.push(start_once(b, launch).await?);
        }
    }
    Ok(out)
}

/// CPU time of a warm function process over a stream of events: per event, for the events in
/// `phases` (name, events), in order, one process for the whole stream.
#[derive(Debug, Clone)]
pub struct StreamCpu {
    pub phases: Vec<(String, usize, f64, f64)>, // (name, events, CPU ms per event, wall ms per event)
    pub errors: usize,
}

pub async fn stream_cpu(binary: &Binary, launch: &Launch, phases: Vec<(String, Vec<Value>)>) -> Result<StreamCpu> {
    let all: Vec<Value> = phases.iter().flat_map(|(_, e)| e.iter().cloned()).collect();
    let total = all.len();
    let api = RuntimeApi::start(&binary.name, all).await?;
    let mut child = spawn(binary, &api, launch).await?;
    api.set_pid(child.id().unwrap_or(0));
    let result = api.wait_for_nexts(total + 1, Duration::from_secs(600)).await;
    let _ = child.kill().await;
    let marks = result?;
    let nexts: Vec<&Mark> = marks.iter().filter(|m| m.kind == MarkKind::Next).collect();
    let errors = marks.iter().filter(|m| matches!(m.kind, MarkKind::Error(_))).count();
    let mut out = Vec::new();
    let mut i = 0;
    for (name, events) in &phases {
        let (a, b) = (nexts[i], nexts[i + events.len()]);
        let ticks_ms = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 * 1000.0 / TICKS_PER_SECOND;
        let ns_ms = b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / 1e6;
        // Nanoseconds when the threads all lived through the phase (ticks agree within their
        // resolution); else the coarser ticks, which also count exited threads.
        let phase_ms = if (ns_ms - ticks_ms).abs() <= 20.0 + 0.05 * ticks_ms { ns_ms } else { ticks_ms };
        let cpu_ms = phase_ms / events.len().max(1) as f64;
        let wall_ms = b.at.saturating_duration_since(a.at).as_secs_f64() * 1000.0 / events.len().max(1) as f64;
        out.push((name.clone(), events.len(), cpu_ms, wall_ms));
        i += events.len();
    }
    Ok(StreamCpu { phases: out, errors })
}

/// A PEM file with only the first certificate of the system trust store, to start a function
/// with `SSL_CERT_FILE` pointing at it: the difference in start time is what loading the whole
/// store costs (rustls-native-certs reads the bundle and every file of the certificate directory
/// when neither `SSL_CERT_FILE` nor `SSL_CERT_DIR` is set). None when there is no known bundle.
pub fn one_certificate_pem(scratch: &Path) -> Option<PathBuf> {
    let bundle =
        ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"].iter().find_map(|p| std::fs::read_to_string(p).ok())?;
    let begin = bundle.find("-----BEGIN CERTIFICATE-----")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = bundle[begin..].find(end_marker)? + begin + end_marker.len();
    let path = scratch.join(format!("kanaria-bench-one-cert-{}.pem", std::process::id()));
    std::fs::write(&path, format!("{}\n", &bundle[begin..end])).ok()?;
    Some(path)
}

/// Size of a binary on disk and of its Lambda package (the binary zipped as `bootstrap`), and
/// where its bytes go.
#[derive(Debug, Clone)]
pub struct Size {
    pub stripped_bytes: u64,
    pub zipped_bytes: u64,
    pub is_stripped: bool,
    pub sections: Sections,
}

/// Sizes of an ELF executable's sections that account for most of a Rust binary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sections {
    /// `.text`: machine code.
    pub code: u64,
    /// `.rodata`: constants, strings, tables (the SDK's endpoint rules among them).
    pub read_only: u64,
    /// `.eh_frame`, `.eh_frame_hdr`, `.gcc_except_table`: unwind tables, kept with
    /// `panic = "abort"` for backtraces.
    pub unwind: u64,
    /// `.data.rel.ro`: pointers (vtables, `&'static` tables) the loader writes at exec in a
    /// position-independent executable; they are dirty pages of every process.
    pub relocated: u64,
    /// Entries of `.rela.dyn`: relocations the loader applies at exec.
    pub relocations: u64,
    /// The binary holds the IANA time-zone database (chrono-tz), recognised by a zone name only
    /// that database spells out.
    pub has_tz_database: bool,
}

/// A zone name found in the IANA database (and so in chrono-tz's tables), not in other code.
const TZ_DATABASE_MARKER: &[u8] = b"America/Argentina/ComodRivadavia";

pub fn size(binary: &Path, scratch: &Path) -> Result<Size> {
    let stripped_bytes = std::fs::metadata(binary).with_context(|| format!("reading {}", binary.display()))?.len();
    let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("function");
    let zip = scratch.join(format!("{name}.zip"));
    // The package Lambda takes: the executable named `bootstrap`, deflated (what cargo-lambda
    // and `sam build` produce).
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   i = zipfile.ZipInfo('bootstrap'); i.external_attr = 0o755 << 16; i.compress_type = zipfile.ZIP_DEFLATED\n\
             \x20   z.writestr(i, open(sys.argv[1], 'rb').read())",
        ])
        .arg(binary)
        .arg(&zip)
        .status()
        .context("running python3 to zip the binary")?;
    if !status.success() {
        bail!("zipping {} failed", binary.display());
    }
    let zipped_bytes = std::fs::metadata(&zip)?.len();
    let _ = std::fs::remove_file(&zip);
    let elf = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let headers = section_headers(&elf);
    Ok(Size {
        stripped_bytes,
        zipped_bytes,
        is_stripped: !headers.iter().any(|h| h.kind == SHT_SYMTAB),
        sections: Sections::of(&elf, &headers),
    })
}

impl Sections {
    fn of(elf: &[u8], headers: &[SectionHeader]) -> Sections {
        let sum = |names: &[&str]| headers.iter().filter(|h| names.contains(&h.name.as_str())).map(|h| h.size).sum::<u64>();
        Sections {
            has_tz_database: elf.windows(TZ_DATABASE_MARKER.len()).any(|w| w == TZ_DATABASE_MARKER),
            code: sum(&[".text"]),
            read_only: sum(&[".rodata"]),
            unwind: sum(&[".eh_frame", ".eh_frame_hdr", ".gcc_except_table"]),
            relocated: sum(&[".data.rel.ro"]),
            relocations: sum(&[".rela.dyn"]) / 24, // Elf64_Rela
        }
    }
}

const SHT_SYMTAB: u32 = 2;

#[derive(Debug)]
struct SectionHeader {
    name: String,
    kind: u32,
    size: u64,
}

/// The section headers of an ELF64 little-endian file (empty if it is not one or is cut short).
fn section_headers(data: &[u8]) -> Vec<SectionHeader> {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Vec::new();
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| data.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let u64_at = |o: usize| data.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let (Some(shoff), Some(shentsize), Some(shnum), Some(shstrndx)) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e)) else {
        return Vec::new();
    };
    let header = |i: usize| -> Option<(u32, u32, u64, u64)> {
        let h = (shoff as usize).checked_add(i.checked_mul(shentsize)?)?;
        Some((u32_at(h)?, u32_at(h + 4)?, u64_at(h + 0x18)?, u64_at(h + 0x20)?))
        // name, type, offset, size
    };
    let Some((_, _, names_at, names_len)) = header(shstrndx) else { return Vec::new() };
    let names = names_at.checked_add(names_len).and_then(|end| data.get(names_at as usize..end as usize)).unwrap_or_default();
    (0..shnum)
        .filter_map(header)
        .map(|(name, kind, _, size)| {
            let name = names.get(name as usize..).and_then(|n| n.split(|b| *b == 0).next()).unwrap_or_default();
            SectionHeader { name: String::from_utf8_lossy(name).into_owned(), kind, size }
        })
        .collect()
}

/// The sample event each function is started with, and what it makes the function do.
pub fn sample_event(root: &Path, function: &str) -> Result<(Value, String)> {
    let file = |name: &str| -> Result<Value> {
        let path = root.join("events").join(name);
        Ok(serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)?)
    };
    Ok(match function {
        HELLO => (json!({"hello": "world"}), "echo".into()),
        HELLO_SDK => (json!({"hello": "world"}), "one DynamoDB ListTables (limit 1)".into()),
        "on-image-push" => (
            file("ecr-push.json")?,
            "events/ecr-push.json: the policy index queried in DynamoDB (no policy names the repository)".into(),
        ),
        "on-task-event" => (file("ecs-task-stopped.json")?, "events/ecs-task-stopped.json (exit 1): the service lock read (no rollout)".into()),
        "decide" => (
            json!({"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": {"content-type": "application/json"},
                   "requestContext": {"http": {"method": "POST", "path": "/"},
                                      "authorizer": {"iam": {"userArn": format!("arn:aws:iam::{}:user/bench", crate::ACCOUNT)}}},
                   "body": "{\"service\": \"bench/web\", \"decision\": \"approve\"}", "isBase64Encoded": false}),
            "kanaria approve of bench/web through the AWS_IAM function URL: the service's lock read from DynamoDB (no rollout waits)".into(),
        ),
        "restart-loop" => (
            file("ecs-task-stopped.json")?,
            "events/ecs-task-stopped.json (exit 1): the lock and policy index read, the stop recorded for the restart-loop count (DynamoDB)"
                .into(),
        ),
        "on-alarm" => (
            json!({"version": "0", "id": "bench", "source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change",
                   "account": crate::ACCOUNT, "region": crate::REGION, "time": "2025-01-01T00:00:00Z", "resources": [],
                   "detail": {"alarmName": "web-5xx", "state": {"value": "ALARM", "reason": "benchmark"},
                              "previousState": {"value": "OK"}}}),
            "alarm web-5xx in ALARM: the in-flight rollouts read from DynamoDB (none lists it)".into(),
        ),
        "rollout-step" => {
            let text = std::fs::read_to_string(root.join("policies/example.yaml"))?;
            let policy = kanaria::policy::parse("example.yaml", &text).map_err(|e| anyhow::anyhow!("{e}"))?;
            let digest = format!("sha256:{}", "ab".repeat(32));
            let image = kanaria::rollout::Image {
                repository: "team/web".into(),
                tag: Some("v2".into()),
                uri: format!("{}.dkr.ecr.{}.amazonaws.com/team/web@{digest}", crate::ACCOUNT, crate::REGION),
                digest,
            };
            let rollout = kanaria::rollout::Rollout::new("bench-rollout".into(), policy, image);
            (
                json!({"action": "bake", "rollout": rollout, "taskToken": "bench-token"}),
                "a Bake call of a rollout that holds no lock: a conditional write in DynamoDB (refused), a read, \
                 then error Kanaria.RolledBack"
                    .into(),
            )
        }
        "scheduled-scale" => (
            json!({"service": "bench/web", "schedule": "bench", "desiredCount": 2}),
            "a schedule for a service that does not exist: Application Auto Scaling and ECS reads, a notice, then \
             error Kanaria.ScheduledScaleFailed"
                .into(),
        ),
        "policy-sync" => (json!({"syncAll": true}), "{\"syncAll\": true}: policies from SSM, schedules from Scheduler".into()),
        "slack-interactions" => (
            file("slack-interaction-function-url.json")?,
            "events/slack-interaction-function-url.json (an Approve click, signed but hours old): the signing secret read \
             from Secrets Manager, the signature checked, then 401 (stale timestamp)"
                .into(),
        ),
        "slack-notify" => (
            file("sns-rollout-card.json")?,
            "events/sns-rollout-card.json (a canary baking at 10%): the bot token read from Secrets Manager, the \
             rollout's message claimed in DynamoDB, one chat.postMessage to the local Slack recorder"
                .into(),
        ),
        other => (json!({}), format!("`{{}}` (no sample event known for {other})")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings_of_this_process() {
        let me = std::process::id();
        assert!(peak_rss_kb(me) > 0);
        // Burn a little CPU so the counters have something to show.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(me) > 0);
        assert_eq!(peak_rss_kb(u32::MAX), 0);
    }

    #[test]
    fn every_function_has_a_sample_event() {
        let root = crate::project_root();
        for f in kanaria::handlers::Function::ALL {
            let (event, note) = sample_event(&root, f.crate_name()).expect("sample event");
            assert!(event.is_object(), "{}", f.crate_name());
            assert!(!note.starts_with('`'), "{} has no sample event of its own", f.crate_name());
        }
    }

    /// The Slack sample events are what Slack and SNS deliver and what the handlers read: the
    /// click is signed with the local signing secret (stale now, as the bench expects) and parses
    /// as an Approve click; the SNS message is a rollout card.
    #[test]
    fn slack_sample_events_are_real_format() {
        use base64::Engine;
        use kanaria::slack::request;
        let root = crate::project_root();
        let (click, _) = sample_event(&root, "slack-interactions").unwrap();
        let body = base64::engine::general_purpose::STANDARD.decode(click["body"].as_str().unwrap()).unwrap();
        let timestamp = click["headers"]["x-slack-request-timestamp"].as_str().unwrap();
        let signed =
            request::SignedRequest { timestamp: Some(timestamp), signature: click["headers"]["x-slack-signature"].as_str(), body: &body };
        let sent_at: u64 = timestamp.parse().unwrap();
        assert_eq!(request::verify(crate::slack::SIGNING_SECRET.as_bytes(), &signed, sent_at + 10), Ok(()));
        assert!(request::verify(crate::slack::SIGNING_SECRET.as_bytes(), &signed, sent_at + 3600).is_err(), "stale an hour later");
        let parsed = request::parse_interaction(&body, &["https://hooks.slack.com/actions/"]).unwrap();
        assert_eq!(parsed.choice, request::Choice::Approve);
        assert_eq!(parsed.team_id, crate::slack::TEAM_ID);

        let (sns, _) = sample_event(&root, "slack-notify").unwrap();
        let record = &sns["Records"][0]["Sns"];
        assert_eq!(record["MessageAttributes"]["kind"]["Value"], kanaria::handlers::progress::CARD_KIND);
        let card: kanaria::handlers::progress::CardEvent = serde_json::from_str(record["Message"].as_str().unwrap()).unwrap();
        assert_eq!(card.card.service, "demo/web");
    }

    #[test]
    fn sections_are_read_from_the_elf_headers() {
        // Test binaries (dev profile) keep their symbol table; the release binaries do not.
        let exe = std::env::current_exe().expect("current exe");
        let headers = section_headers(&std::fs::read(&exe).unwrap());
        assert!(headers.iter().any(|h| h.kind == SHT_SYMTAB));
        let text = headers.iter().find(|h| h.name == ".text").expect("a .text section");
        assert!(text.size > 100_000, "{headers:?}");
        let elf = std::fs::read(&exe).unwrap();
        let sections = Sections::of(&elf, &headers);
        assert_eq!(sections.code, text.size);
        // This test binary links kanaria (schedules in time zones); a shell script does not.
        assert!(sections.has_tz_database);
        assert!(!Sections::of(b"#!/bin/sh\n", &[]).has_tz_database);
        assert!(sections.unwind > 0 && sections.read_only > 0, "{sections:?}");
        assert!(sections.code + sections.read_only + sections.unwind <= std::fs::metadata(&exe).unwrap().len());
        // Not ELF, or cut short: nothing, and no panic.
        assert!(section_headers(b"#!/bin/sh\n").is_empty());
        for cut in [0, 4, 64, 100, elf.len() / 2] {
            let _ = section_headers(&elf[..cut]);
        }
        assert!(size(Path::new("/nonexistent"), &std::env::temp_dir()).is_err());
    }
}
