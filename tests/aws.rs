//! The AWS Secrets Manager store against moto's server (PyPI `moto[server]`, pinned in
//! tests/aws/requirements.txt), started on 127.0.0.1 for each test: several "hosts" (folders
//! with their own settings and access-token copy) share one secret and one test
//! authorization server. Run with `cargo test --features aws --test aws`.
#![cfg(feature = "aws")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{Answer, Dialect, FaultProxy};
use common::{AuthServer, TestEnv, assert_exit, atl_command, fleet, stderr, stdout, wait_for};
use serde_json::{Value, json};

/// moto's server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
    _logs: tempfile::TempDir,
}

impl Moto {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts `python3 -m moto.server -H 127.0.0.1 -p 0` (the `moto_server` script, through
    /// the Python that pip installed it for), its log in a file (it logs every request), and
    /// waits for the port it prints.
    fn start_with(env: &[(&str, &str)]) -> Self {
        let logs = tempfile::tempdir().expect("tempdir");
        let log = logs.path().join("moto.log");
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start python3 ({e}): install Python 3, then `pip install -r tests/aws/requirements.txt`")
            });
        let mut endpoint = None;
        let mut child = child;
        wait_for("moto's server to listen", Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "moto's server exited ({status}): {text}\nInstall it with `pip install -r tests/aws/requirements.txt`"
                );
            }
            endpoint = text.lines().find_map(|l| l.split("Running on ").nth(1)).map(|u| u.trim().to_owned());
            endpoint.is_some()
        });
        Self { child, endpoint: endpoint.expect("endpoint"), _logs: logs }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host of the fleet: its own folder, env file and access-token copy.
struct Host {
    dir: PathBuf,
    endpoint: String,
    secret_key: String,
}

impl Host {
    /// A host in `env`'s folder, named `name`, with `env`'s settings plus the store's.
    fn new(env: &TestEnv, moto: &Moto, name: &str, secret: &str, extra: &str) -> Self {
        let dir = env.path(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let settings = std::fs::read_to_string(env.path(".env")).expect(".env");
        let settings =
            format!("{settings}ATL_STORE=aws-secretsmanager:{secret}\nATL_STORE_LEASE=4s\n{extra}");
        std::fs::write(dir.join(".env"), settings).expect("write .env");
        common::set_mode(&dir.join(".env"), 0o600);
        Self { dir, endpoint: moto.endpoint.clone(), secret_key: "testing".to_owned() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = atl_command(&self.dir, args);
        command.envs([
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run atl-token")
    }

    fn token_file(&self) -> PathBuf {
        self.dir.join("token.json")
    }

    fn copy(&self) -> PathBuf {
        self.dir.join("token.json.access")
    }

    /// `status --json`'s store section.
    fn store(&self) -> Value {
        let output = self.run(&["status", "--json"]);
        assert_exit(&output, 0);
        let status: Value = serde_json::from_slice(&output.stdout).expect("status is JSON");
        status["store"].clone()
    }

    /// The refresh token in the secret (after a refresh, if the access token has less than
    /// a second left).
    fn refresh_token(&self) -> String {
        let output = self.run(&["print", "--refresh", "--min-valid", "1s"]);
        assert_exit(&output, 0);
        stdout(&output).trim().to_owned()
    }
}

/// A Data Center server (strict rotation: a rotated refresh token dies at once), a moto
/// server, and a family pushed to the secret from host `a`'s token file.
fn fleet_setup(access_ttl: i64, access_left: i64) -> (TestEnv, Moto, Host) {
    let env = TestEnv::with(AuthServer::datacenter());
    env.auth.set_access_ttl(access_ttl);
    family_in_secret(env, access_left)
}

/// A moto server, and a family pushed to the secret from host `a`'s token file (then
/// deleted), its access token valid for `access_left` seconds.
fn family_in_secret(env: TestEnv, access_left: i64) -> (TestEnv, Moto, Host) {
    let moto = Moto::start();
    let host = Host::new(&env, &moto, "a", "team/jira", "");
    env.write_token_at(&host.token_file(), access_left);
    let pushed = host.run(&["store", "push"]);
    assert_exit(&pushed, 0);
    std::fs::remove_file(host.token_file()).expect("rm token.json");
    (env, moto, host)
}

#[test]
fn a_pushed_family_is_shared_by_hosts_and_refreshed_once() {
    let (env, moto, a) = fleet_setup(3600, -10);
    let b = Host::new(&env, &moto, "b", "team/jira", "");
    assert_eq!(a.store()["generation"], 1);

    // Host b refreshes the expired token; host a then uses b's result.
    let printed_b = b.run(&["print"]);
    assert_exit(&printed_b, 0);
    let printed_a = a.run(&["print"]);
    assert_exit(&printed_a, 0);
    assert_eq!(stdout(&printed_a), stdout(&printed_b), "one family, one access token");
    assert_eq!(env.auth.refreshes(), 1);
    assert_eq!(a.store()["generation"], 2);
    assert!(env.auth.is_live(&a.refresh_token()));

    // The per-host copy holds the access token only, mode 0600.
    let copy = std::fs::read_to_string(a.copy()).expect("copy");
    assert!(copy.contains(stdout(&printed_a).trim()));
    assert!(!copy.contains("rt-"), "no refresh token outside the secret: {copy}");
    assert_eq!(common::mode_of(&a.copy()), 0o600);
    assert!(!a.token_file().exists() && !b.token_file().exists(), "no token file on either host");

    // A fresh token is printed from the copy: kill the AWS endpoint and it still works.
    drop(moto);
    let offline = a.run(&["print"]);
    assert_exit(&offline, 0);
    assert_eq!(stdout(&offline), stdout(&printed_a));
}

#[test]
fn store_push_refuses_to_replace_a_live_family_without_force() {
    let (env, _moto, a) = fleet_setup(3600, 3000);
    let live = a.refresh_token();
    env.write_token_at(&a.token_file(), 3000);
    let refused = a.run(&["store", "push"]);
    assert_exit(&refused, 2);
    assert!(stderr(&refused).contains("already holds a live token family"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--force"));
    assert_eq!(a.refresh_token(), live, "unchanged");

    let forced = a.run(&["store", "push", "--force"]);
    assert_exit(&forced, 0);
    assert_ne!(a.refresh_token(), live);
    assert_eq!(a.store()["generation"], 2);
}

#[test]
fn status_shows_the_store_generation_and_lease() {
    let (_env, _moto, a) = fleet_setup(3600, 3000);
    let output = a.run(&["status"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("AWS Secrets Manager, team/jira"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("generation") && l.contains(" 1 (version ")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("lease") && l.ends_with("none")), "{text}");
    let check = a.run(&["status", "--check"]);
    assert_exit(&check, 0);
}

/// Three hosts, five `print`s each every half second for 30 seconds, 3-second access tokens
/// and strict rotation: every print gets a token the server accepts, no superseded refresh
/// token ever reaches the server, each refresh is one generation, and the family lives.
#[test]
fn a_fleet_of_hosts_never_spends_a_superseded_refresh_token() {
    let (env, moto, a) = fleet_setup(3, -10);
    let hosts =
        [a, Host::new(&env, &moto, "b", "team/jira", ""), Host::new(&env, &moto, "c", "team/jira", "")];
    let (finished, rounds) = fleet::run(hosts.len(), Duration::from_secs(30), |i| {
        hosts[i].command(&["print", "--min-valid", "1s"])
    });
    assert!(rounds >= 59, "a round every half second: {rounds}");
    assert_eq!(finished.len(), rounds * 15, "every print finished");
    for (output, at, host) in &finished {
        assert_exit(output, 0);
        let token = stdout(output).trim().to_owned();
        assert!(env.auth.access_valid_at(&token, *at), "host {host} printed {token}, not valid when printed");
    }
    assert_eq!(env.auth.superseded(), 0, "a superseded refresh token reached the server");
    let generation = hosts[0].store()["generation"].as_u64().expect("generation");
    assert_eq!(env.auth.refreshes(), generation - 1, "one refresh per generation");
    eprintln!(
        "fleet: {} prints in {rounds} rounds, {} refreshes, generation {generation}, {} token requests",
        finished.len(),
        env.auth.refreshes(),
        env.auth.token_calls().len()
    );
    assert!(env.auth.refreshes() >= 9, "30 s of 3-second tokens need refreshes: {}", env.auth.refreshes());
    assert!(env.auth.is_live(&hosts[0].refresh_token()), "the family is alive");
}

#[test]
fn a_crash_after_the_claim_is_recovered_when_the_lease_runs_out() {
    let (env, moto, a) = fleet_setup(3600, -10);
    fleet::crash_after(a.command(&["refresh"]), "claimed");
    assert_eq!(env.auth.refreshes(), 0, "nothing was spent");
    let lease = a.store()["lease"].clone();
    assert_eq!(lease["live"], true, "the claim holds a lease: {lease}");

    let b = Host::new(&env, &moto, "b", "team/jira", "");
    let started = Instant::now();
    let printed = b.run(&["print", "--min-valid", "1s"]);
    assert_exit(&printed, 0);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for the lease");
    assert_eq!(env.auth.refreshes(), 1);
    assert_eq!(env.auth.superseded(), 0);
    assert!(env.auth.is_live(&b.refresh_token()), "the family is alive");
    assert_eq!(b.store()["generation"], 2);
}

#[test]
fn a_crash_after_the_durable_put_is_recovered_without_another_refresh() {
    let (env, moto, a) = fleet_setup(3600, -10);
    fleet::crash_after(a.command(&["refresh"]), "put");
    assert_eq!(env.auth.refreshes(), 1);
    assert_eq!(a.store()["generation"], 1, "written, not promoted");

    let b = Host::new(&env, &moto, "b", "team/jira", "");
    let printed = b.run(&["print", "--min-valid", "1s"]);
    assert_exit(&printed, 0);
    assert_eq!(env.auth.refreshes(), 1, "the written set was promoted, not refreshed again");
    assert_eq!(b.store()["generation"], 2);
    assert!(env.auth.is_live(&b.refresh_token()), "the family is alive");
    assert_eq!(env.auth.superseded(), 0);
}

#[test]
fn a_lost_answer_on_data_center_is_reported_as_log_in_again_on_every_host() {
    let (env, moto, a) = fleet_setup(3600, -10);
    fleet::crash_after(a.command(&["refresh"]), "answered");
    assert_eq!(env.auth.refreshes(), 1, "the server rotated; the answer died with the process");

    let b = Host::new(&env, &moto, "b", "team/jira", "");
    let printed = b.run(&["print", "--min-valid", "1s"]);
    assert_exit(&printed, 4);
    let message = stderr(&printed);
    assert!(message.contains("token family in secret team/jira is dead"), "{message}");
    assert!(message.contains("Run `atl-token login` on one host"), "{message}");
    assert!(message.contains("no host had rotated it"), "{message}");

    // Every other host gets the same answer at once, without spending anything.
    let calls = env.auth.token_calls().len();
    let c = Host::new(&env, &moto, "c", "team/jira", "");
    let again = c.run(&["refresh"]);
    assert_exit(&again, 4);
    assert!(stderr(&again).contains("is dead"), "{}", stderr(&again));
    assert_eq!(env.auth.token_calls().len(), calls, "a dead family sends nothing");
}

#[test]
fn a_lost_answer_on_cloud_is_recovered_within_the_grace_period() {
    let env = TestEnv::new();
    env.auth.set_reuse_window(Duration::from_secs(600));
    let (env, moto, a) = family_in_secret(env, -10);
    fleet::crash_after(a.command(&["refresh"]), "answered");

    let b = Host::new(&env, &moto, "b", "team/jira", "");
    let printed = b.run(&["print", "--min-valid", "1s"]);
    assert_exit(&printed, 0);
    assert!(env.auth.is_live(&b.refresh_token()), "the family is alive");
}

#[test]
fn logout_marks_the_family_logged_out_for_every_host() {
    let (env, moto, a) = fleet_setup(3600, 3000);
    let b = Host::new(&env, &moto, "b", "team/jira", "");
    assert_exit(&b.run(&["print"]), 0);
    let out = a.run(&["logout"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("marked logged out"), "{}", stderr(&out));
    assert_eq!(env.auth.revoked().len(), 1, "Data Center: revoked at the server");
    let refused = b.run(&["refresh"]);
    assert_exit(&refused, 4);
    assert!(stderr(&refused).contains("logged out"), "{}", stderr(&refused));
}

#[test]
fn a_wrong_aws_secret_key_gets_a_clear_aws_error() {
    let env = TestEnv::new();
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let mut host = Host::new(&env, &moto, "a", "team/jira", "");
    host.secret_key = "wrong-secret-key".to_owned();
    let output = host.run(&["status"]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert!(message.contains("AWS Secrets Manager GetSecretValue on team/jira failed"), "{message}");
    assert!(message.contains("AWS_SECRET_ACCESS_KEY"), "names what to check: {message}");
    assert!(!message.contains("wrong-secret-key"), "no secret in the message: {message}");
}

/// `login` creates the secret when it is missing, and a second login starts a new family
/// in it, one generation on, that every host then uses.
#[test]
fn login_creates_the_secret_and_a_second_login_replaces_the_family() {
    let env = TestEnv::new();
    let moto = Moto::start();
    let port = common::free_port();
    let host = Host::new(
        &env,
        &moto,
        "a",
        "team/new",
        &format!("ATL_REDIRECT_URI=http://127.0.0.1:{port}/callback\n"),
    );
    for round in 1..=2 {
        let (status, stderr) = common::paste_login(host.command(&["login", "--paste"]), port, |_| {});
        assert_eq!(status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("Token saved to secret team/new"), "{stderr}");
        assert_eq!(host.store()["generation"], round);
    }
    assert!(!host.token_file().exists(), "no token file: the family is in the secret");
    assert!(env.auth.is_live(&host.refresh_token()));
}

/// A host with a wrong clock (or a hand) wrote a lease that ends ten years from now: the
/// fleet goes on, counting it as expired, and says so.
#[test]
fn a_lease_from_the_future_does_not_stop_the_fleet() {
    let (env, moto, a) = fleet_setup(3600, -10);
    let script = r#"
import boto3, json, sys, time
c = boto3.client("secretsmanager", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="testing")
doc = json.loads(c.get_secret_value(SecretId="team/jira")["SecretString"])
doc["lease"] = {"holder": "wrong-clock:1:abcd", "until_ms": int(time.time() * 1000) + 10 * 365 * 86400 * 1000}
c.put_secret_value(SecretId="team/jira", SecretString=json.dumps(doc))
"#;
    let put = Command::new("python3").args(["-c", script, &moto.endpoint]).output().expect("python3");
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    assert_eq!(a.store()["lease"]["live"], false, "shown as expired");

    let started = Instant::now();
    let printed = a.run(&["print", "--min-valid", "1s"]);
    assert_exit(&printed, 0);
    assert!(started.elapsed() < Duration::from_secs(8), "no wait for the lease");
    let err = stderr(&printed);
    assert!(err.contains("wrong-clock:1:abcd") && err.contains("treated as expired"), "{err}");
    assert_eq!(env.auth.refreshes(), 1);
    assert!(env.auth.is_live(&a.refresh_token()), "the family is alive");
}

/// The fault proxy ([`common::proxy`]) in front of moto, speaking AWS: operations told apart
/// by `X-Amz-Target`; a version is a `PutSecretValue`; a burst of throttling follows a
/// claim's promote (`UpdateSecretVersionStage`), as one right after a refresh token was
/// spent would.
fn fault_proxy(moto: &Moto) -> FaultProxy {
    fn target(request: &common::Request) -> &str {
        request.header("x-amz-target").unwrap_or_default()
    }
    FaultProxy::start(
        &moto.endpoint,
        Dialect {
            throttled: Answer {
                status: "400 Bad Request",
                headers: "Content-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: ThrottlingException\r\n",
                body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            },
            server_error: Answer {
                status: "500 Internal Server Error",
                headers: "Content-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: InternalServiceError\r\n",
                body: r#"{"__type":"InternalServiceError","message":"An error occurred"}"#,
            },
            writes: |request| target(request).ends_with(".PutSecretValue"),
            arms: |request| target(request).ends_with(".UpdateSecretVersionStage"),
        },
    )
}

/// The fleet of the test above, its AWS calls through the fault proxy: 15% of them meet
/// throttling, a 500, a dropped connection, a lost answer (the call applied), or a delay
/// past the time limit (then applied). Every print gets a token the server issued and that
/// was valid when printed, or (at most 3% of them) exits 1 with a one-sentence message; no
/// superseded refresh token reaches the server, each refresh is one generation, and the
/// family lives.
#[test]
fn a_fleet_under_aws_faults_loses_nothing() {
    let (env, moto, _) = fleet_setup(3, -10);
    let proxy = fault_proxy(&moto);
    let hosts: Vec<Host> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let mut host = Host::new(&env, &moto, name, "team/jira", "ATL_STORE_LEASE=30s\n");
            host.endpoint = proxy.url.clone();
            host
        })
        .collect();
    // The hosts' ATL_HTTP_TIMEOUT is 2 s.
    proxy.inject(15, Duration::from_millis(2500));
    let (finished, rounds) = fleet::run(hosts.len(), Duration::from_secs(30), |i| {
        hosts[i].command(&["print", "--min-valid", "1s"])
    });
    assert_eq!(finished.len(), rounds * 15, "every print finished");
    let failed = fleet::failures(&finished, &env.auth);
    for (_, message) in &failed {
        assert!(message.len() < 400, "{} bytes: {message}", message.len());
    }
    let failed = failed.len();
    let generation = hosts[0].store()["generation"].as_u64().expect("generation");
    eprintln!(
        "fleet under faults: {} prints, {failed} exit 1, {} refreshes, generation {generation}, {} calls \
         passed, faults {:?} (throttling, 500, dropped, answer lost, late)",
        finished.len(),
        env.auth.refreshes(),
        proxy.calls(),
        proxy.faulted()
    );
    assert!(failed * 100 <= finished.len() * 3, "{failed} of {} prints failed", finished.len());
    assert!(proxy.faulted().iter().all(|&n| n > 0), "every kind of fault happened: {:?}", proxy.faulted());
    assert_eq!(env.auth.superseded(), 0, "a superseded refresh token reached the server");
    assert_eq!(env.auth.refreshes(), generation - 1, "one refresh per generation");
    assert!(env.auth.refreshes() >= 5, "30 s of 3-second tokens need refreshes: {}", env.auth.refreshes());
    assert!(env.auth.is_live(&hosts[0].refresh_token()), "the family is alive");
}

/// A `GetParameter` answer for a lock parameter, its `LastModifiedDate` ten minutes back.
fn aged_lock(body: &[u8]) -> Vec<u8> {
    let Ok(mut answer) = serde_json::from_slice::<Value>(body) else { return body.to_vec() };
    let name = answer["Parameter"]["Name"].as_str().unwrap_or_default().to_owned();
    if name.contains("lock") {
        let old =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() - 600;
        answer["Parameter"]["LastModifiedDate"] = json!(old);
    }
    serde_json::to_vec(&answer).expect("JSON")
}

/// Five seconds of `ThrottlingException` starting right after the claim is promoted, that is
/// as the refresh token is spent: the new set is written once AWS lets it, and nothing is lost.
#[test]
fn a_burst_of_throttling_right_after_a_refresh_loses_nothing() {
    let (env, moto, _) = fleet_setup(3600, -10);
    let proxy = fault_proxy(&moto);
    let mut a = Host::new(&env, &moto, "through-proxy", "team/jira", "ATL_STORE_LEASE=30s\n");
    a.endpoint = proxy.url.clone();
    proxy.arm(Duration::from_secs(5));
    let refreshed = a.run(&["refresh"]);
    assert_exit(&refreshed, 0);
    assert!(proxy.throttled() >= 3, "the burst hit the write: {} throttled", proxy.throttled());
    assert_eq!(env.auth.refreshes(), 1);
    assert_eq!(env.auth.superseded(), 0);
    let b = Host::new(&env, &moto, "b", "team/jira", "");
    assert_eq!(b.store()["generation"], 2);
    assert!(env.auth.is_live(&b.refresh_token()), "the family is alive");
}

/// A host waits for another's refresh, which is slow to write its result: the token it then
/// finds has less than `--min-valid` left, so it refreshes again rather than print it.
#[test]
fn a_print_that_waited_for_another_host_still_gets_min_valid() {
    let (env, moto, a) = fleet_setup(3, -10);
    let b = Host::new(&env, &moto, "b", "team/jira", "");
    let mut slow = a
        .command(&["refresh"])
        .env("ATL_TOKEN_TEST_ONLY_PAUSE_AT", "answered+2500ms")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(slow.stderr.take().expect("stderr")).lines();
    let paused = lines.next().expect("a line").expect("utf-8");
    assert!(paused.contains("paused after step answered"), "{paused}");
    let printed = b.run(&["print", "--min-valid", "1s"]);
    let ended = Instant::now();
    assert!(slow.wait().expect("wait").success());
    assert_exit(&printed, 0);
    let token = stdout(&printed).trim().to_owned();
    assert!(
        env.auth.access_valid_at(&token, ended + Duration::from_millis(900)),
        "printed a token with less than --min-valid left: {token}"
    );
}

/// A host killed after the server's answer (Data Center: the old pair is gone) kept the new
/// set: the others find the family dead, and its next run hands the set over, so it lives.
#[test]
fn a_host_that_died_after_the_answer_hands_the_new_set_over_on_its_next_run() {
    let (env, moto, a) = fleet_setup(3600, -10);
    fleet::crash_after(a.command(&["refresh"]), "answered");
    let b = Host::new(&env, &moto, "b", "team/jira", "");
    assert_exit(&b.run(&["print", "--min-valid", "1s"]), 4);

    let handed = a.run(&["print", "--min-valid", "1s"]);
    assert_exit(&handed, 0);
    assert!(stderr(&handed).contains("it is there now"), "{}", stderr(&handed));
    assert_eq!(env.auth.superseded(), 1, "only b's attempt, before the hand-over");
    assert!(env.auth.is_live(&b.refresh_token()), "the family lives again");
    assert_eq!(b.store()["generation"], 2);
}

/// An AWS error is one sentence: the operation, the secret, and what AWS (or the network)
/// said; the SDK's debug form only with `-v`.
#[test]
fn aws_errors_are_one_sentence_and_the_sdks_detail_is_for_verbose() {
    let env = TestEnv::new();
    let moto = Moto::start();
    let mut host = Host::new(&env, &moto, "a", "team/jira", "");
    host.endpoint = format!("http://127.0.0.1:{}", common::CLOSED_PORT);
    let output = host.run(&["status"]);
    assert_exit(&output, 1);
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("AWS Secrets Manager GetSecretValue on team/jira failed: AWS could not be reached"),
        "{message}"
    );
    assert!(message.len() < 300, "{} bytes: {message}", message.len());
    let verbose = host.run(&["-v", "status"]);
    assert!(stderr(&verbose).contains("DispatchFailure"), "{}", stderr(&verbose));
}

/// How many secret versions a refresh writes: alone, and when 15 processes on 3 hosts find
/// the token expired at once. A measurement for bench/RESULTS.md (run with `--ignored
/// --nocapture`); it fails only past the issue's bound of 3 on average.
#[test]
#[ignore = "a measurement: cargo test --features aws --test aws -- --ignored --nocapture versions"]
fn versions_per_refresh_alone_and_racing() {
    let (env, moto, _) = fleet_setup(3600, -10);
    let proxy = fault_proxy(&moto);
    let hosts: Vec<Host> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let mut host = Host::new(&env, &moto, name, "team/jira", "");
            host.endpoint = proxy.url.clone();
            host
        })
        .collect();
    let start = (proxy.writes(), proxy.calls());
    for _ in 0..5 {
        assert_exit(&hosts[0].run(&["refresh"]), 0);
    }
    let alone = ((proxy.writes() - start.0) as f64 / 5.0, (proxy.calls() - start.1) as f64 / 5.0);
    let (mut versions, mut calls) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        fleet::expire(&env.auth, hosts[0].command(&["refresh"]));
        let before = (proxy.writes(), proxy.calls(), env.auth.refreshes());
        fleet::race(hosts.len(), |i| hosts[i].command(&["print", "--min-valid", "1s"]));
        let refreshes = (env.auth.refreshes() - before.2).max(1) as f64;
        versions.push((proxy.writes() - before.0) as f64 / refreshes);
        calls.push((proxy.calls() - before.1) as f64 / refreshes);
    }
    let average = versions.iter().sum::<f64>() / versions.len() as f64;
    let average_calls = calls.iter().sum::<f64>() / calls.len() as f64;
    eprintln!(
        "per refresh: alone {:.1} versions, {:.1} calls; 15 racing processes {versions:?} versions \
         (average {average:.1}), {calls:?} calls (average {average_calls:.1})",
        alone.0, alone.1
    );
    assert!(average <= 3.0, "{average:.1} versions per refresh when racing");
}

/// A service account's fleet: the first print creates the secret with one fetch, and when
/// the shared access token expires, 15 processes on 3 hosts make one token request between
/// them. Nothing was ever a refresh.
#[test]
fn a_service_account_fleet_shares_one_access_token() {
    let env = TestEnv::new();
    env.auth.set_access_ttl(2);
    let moto = Moto::start();
    let hosts: Vec<Host> = ["a", "b", "c"]
        .iter()
        .map(|name| Host::new(&env, &moto, name, "team/bot", "ATL_GRANT=client_credentials\n"))
        .collect();
    let first = hosts[0].run(&["print", "--min-valid", "1s"]);
    assert_exit(&first, 0);
    assert_eq!(env.auth.credential_grants(), 1);
    assert_eq!(hosts[1].store()["generation"], 1, "the secret was made");
    env.auth.set_access_ttl(3600);
    std::thread::sleep(Duration::from_millis(2100));
    let children: Vec<Child> = hosts
        .iter()
        .flat_map(|host| (0..5).map(move |_| host.command(&["print", "--min-valid", "1s"])))
        .map(|mut command| command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn"))
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert_exit(&output, 0);
        assert!(env.auth.access_valid_at(stdout(&output).trim(), Instant::now()));
    }
    assert_eq!(env.auth.credential_grants(), 2, "one fetch for the 15 racing prints");
    assert_eq!(env.auth.refreshes(), 0);
}

/// One call of AWS's JSON protocol to moto (which checks no signature), e.g.
/// `AmazonSSM.GetParameter`: the answer's JSON.
fn aws_json(moto: &Moto, target: &str, body: Value) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder().no_proxy().build().expect("client");
    let answer = client
        .post(&moto.endpoint)
        .header("X-Amz-Target", target)
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/{}/aws4_request, \
                 SignedHeaders=host, Signature=0",
                if target.starts_with("AmazonSSM") { "ssm" } else { "secretsmanager" }
            ),
        )
        .body(body.to_string())
        .send()
        .expect("moto answers");
    serde_json::from_slice(&answer.bytes().expect("body")).unwrap_or(Value::Null)
}

/// The real binary with the AWS settings of a test against `moto`, in `env`'s folder.
fn psoxy_command(env: &TestEnv, moto: &Moto, args: &[&str]) -> Command {
    let mut command = atl_command(env.dir.path(), args);
    command.envs([
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]);
    command
}

/// Seed 004's steps 5 to 9: a fresh family goes to psoxy's SSM parameters in its formats,
/// the cloud id is printed and set in terraform.tfvars, the lock is released, and the token
/// file is never spent again.
#[test]
fn psoxy_push_writes_psoxys_parameters_and_hands_the_family_over() {
    let env = TestEnv::new();
    let moto = Moto::start();
    env.write_token(3600);
    let token = env.read_token();
    std::fs::write(env.path("terraform.tfvars"), "environment_name = \"psoxy\"\njira_cloud_id = \"\"\n")
        .expect("write");
    let output = psoxy_command(
        &env,
        &moto,
        &["psoxy", "push", "aws-ssm:", "--kms-key-id", "alias/psoxy", "--tfvars", "terraform.tfvars"],
    )
    .output()
    .expect("run");
    assert_exit(&output, 0);
    assert_eq!(stdout(&output).trim(), common::SITE_ID, "the cloud id on stdout");
    assert_eq!(
        std::fs::read_to_string(env.path("terraform.tfvars")).expect("tfvars"),
        format!("environment_name = \"psoxy\"\njira_cloud_id = \"{}\"\n", common::SITE_ID)
    );
    let parameter = |name: &str| {
        aws_json(&moto, "AmazonSSM.GetParameter", json!({"Name": name, "WithDecryption": true}))["Parameter"]
            .clone()
    };
    let refresh = parameter("PSOXY_JIRA_CLOUD_REFRESH_TOKEN");
    assert_eq!(refresh["Type"], "SecureString");
    assert_eq!(refresh["Value"], token["refresh_token"]);
    assert_eq!(parameter("PSOXY_JIRA_CLOUD_CLIENT_ID")["Value"], common::CLIENT_ID);
    assert_eq!(parameter("PSOXY_JIRA_CLOUD_CLIENT_SECRET")["Value"], common::CLIENT_SECRET);
    let access: Value =
        serde_json::from_str(parameter("PSOXY_JIRA_CLOUD_ACCESS_TOKEN")["Value"].as_str().expect("value"))
            .expect("JSON");
    let expires_ms = token["expires_at"].as_u64().expect("expires_at") * 1000;
    assert_eq!(access, json!({"token": token["access_token"], "expirationDate": expires_ms}));
    let described = aws_json(
        &moto,
        "AmazonSSM.DescribeParameters",
        json!({"ParameterFilters": [{"Key": "Name", "Values": ["PSOXY_JIRA_CLOUD_REFRESH_TOKEN"]}]}),
    );
    assert_eq!(described["Parameters"][0]["KeyId"], "alias/psoxy", "{described}");
    for lock in ["PSOXY_JIRA_CLOUD_lock_OAUTH_REFRESH_TOKEN", "PSOXY_JIRA_CLOUD_OAUTH_REFRESH_TOKEN_lock"] {
        assert!(parameter(lock).is_null(), "the lock {lock} was released");
    }

    // psoxy owns it now: nothing here spends it, and it is not pushed twice.
    for args in [&["refresh"][..], &["print", "--refresh"][..], &["psoxy", "push", "aws-ssm:"][..]] {
        let refused = psoxy_command(&env, &moto, args).output().expect("run");
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {}", stdout(&refused));
        assert!(
            stderr(&refused).contains("handed over to aws-ssm:PSOXY_JIRA_CLOUD_"),
            "{}",
            stderr(&refused)
        );
    }
    assert_eq!(env.auth.refreshes(), 0);
    let status =
        psoxy_command(&env, &moto, &["psoxy", "status", "aws-ssm:", "--check"]).output().expect("run");
    assert_exit(&status, 0);
    assert!(stdout(&status).starts_with("OK:"), "{}", stdout(&status));
    assert!(!stdout(&status).contains(token["refresh_token"].as_str().expect("rt")), "never a value");
}

/// psoxy holding its lock (fresh) makes `push` wait, then refuse (exit 1) naming the lock;
/// nothing is written and the lock is psoxy's still.
#[test]
fn psoxy_push_respects_psoxys_lock() {
    let env = TestEnv::new();
    let moto = Moto::start();
    env.write_token(3600);
    let lock = "PSOXY_JIRA_CLOUD_OAUTH_REFRESH_TOKEN_lock";
    aws_json(&moto, "AmazonSSM.PutParameter", json!({"Name": lock, "Value": "locked_1", "Type": "String"}));
    let started = Instant::now();
    let output =
        psoxy_command(&env, &moto, &["psoxy", "push", "aws-ssm:", "--wait", "2s"]).output().expect("run");
    assert_exit(&output, 1);
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    assert!(stderr(&output).contains(lock), "{}", stderr(&output));
    let value =
        aws_json(&moto, "AmazonSSM.GetParameter", json!({"Name": lock}))["Parameter"]["Value"].clone();
    assert_eq!(value, "locked_1", "psoxy's lock is left alone");
    let refresh =
        aws_json(&moto, "AmazonSSM.GetParameter", json!({"Name": "PSOXY_JIRA_CLOUD_REFRESH_TOKEN"}));
    assert!(refresh["Parameter"].is_null(), "nothing was written: {refresh}");
}

/// With the values in Secrets Manager, the lock is still psoxy's SSM parameter.
#[test]
fn psoxy_push_to_secrets_manager() {
    let env = TestEnv::new();
    let moto = Moto::start();
    env.write_token(3600);
    let token = env.read_token();
    let output = psoxy_command(&env, &moto, &["psoxy", "push", "aws-secretsmanager:psoxy/jira/"])
        .output()
        .expect("run");
    assert_exit(&output, 0);
    let secret =
        aws_json(&moto, "secretsmanager.GetSecretValue", json!({"SecretId": "psoxy/jira/REFRESH_TOKEN"}));
    assert_eq!(secret["SecretString"], token["refresh_token"], "{secret}");
    let status = psoxy_command(&env, &moto, &["psoxy", "status", "aws-secretsmanager:psoxy/jira/"])
        .output()
        .expect("run");
    assert_exit(&status, 0);
    assert!(stdout(&status).contains("psoxy/jira/CLIENT_SECRET"), "{}", stdout(&status));
}

/// A psoxy lock left behind (ten minutes old, its holder gone) is stale: `push` says so,
/// takes it over, and goes on.
#[test]
fn psoxy_push_takes_over_a_stale_lock() {
    let env = TestEnv::new();
    let moto = Moto::start();
    let proxy = fault_proxy(&moto);
    proxy.rewrite(|request, body| {
        let target = request.header("x-amz-target").unwrap_or_default();
        if target.ends_with(".GetParameter") { aged_lock(body) } else { body.to_vec() }
    });
    env.write_token(3600);
    let lock = "PSOXY_JIRA_CLOUD_lock_OAUTH_REFRESH_TOKEN";
    aws_json(&moto, "AmazonSSM.PutParameter", json!({"Name": lock, "Value": "locked_1", "Type": "String"}));
    let output = psoxy_command(&env, &moto, &["psoxy", "push", "aws-ssm:", "--wait", "2s"])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .output()
        .expect("run");
    assert_exit(&output, 0);
    assert!(stderr(&output).contains(&format!("psoxy's lock {lock} is stale")), "{}", stderr(&output));
    assert!(
        aws_json(&moto, "AmazonSSM.GetParameter", json!({"Name": lock}))["Parameter"].is_null(),
        "released"
    );
    let refresh =
        aws_json(&moto, "AmazonSSM.GetParameter", json!({"Name": "PSOXY_JIRA_CLOUD_REFRESH_TOKEN"}));
    assert!(!refresh["Parameter"].is_null(), "written");
}

/// Set once the push has written psoxy's refresh token: the lock's later reads then show
/// another holder's value.
static PSOXY_WROTE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// psoxy's view of its lock after the push wrote the values: someone else's (taken over).
fn taken_over_after_the_write(request: &common::Request, body: &[u8]) -> Vec<u8> {
    let target = request.header("x-amz-target").unwrap_or_default();
    let name = serde_json::from_slice::<Value>(&request.body).unwrap_or_default()["Name"].clone();
    let name = name.as_str().unwrap_or_default();
    if target.ends_with(".PutParameter") && name == "PSOXY_JIRA_CLOUD_REFRESH_TOKEN" {
        PSOXY_WROTE.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let Ok(mut answer) = serde_json::from_slice::<Value>(body) else { return body.to_vec() };
    if target.ends_with(".GetParameter")
        && name.contains("lock")
        && PSOXY_WROTE.load(std::sync::atomic::Ordering::SeqCst)
    {
        answer["Parameter"]["Value"] = json!("locked_taken_over");
    }
    answer.to_string().into_bytes()
}

/// The third review (from the code): the lock's release deleted the parameter without
/// checking that it still held atl-token's value. One taken over meanwhile is left alone.
#[test]
fn psoxy_push_leaves_a_lock_taken_over_meanwhile() {
    let env = TestEnv::new();
    let moto = Moto::start();
    let proxy = fault_proxy(&moto);
    proxy.rewrite(taken_over_after_the_write);
    env.write_token(3600);
    let output = psoxy_command(&env, &moto, &["psoxy", "push", "aws-ssm:"])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .output()
        .expect("run");
    assert_exit(&output, 0);
    assert!(stderr(&output).contains("no longer holds atl-token's value"), "{}", stderr(&output));
    for lock in ["PSOXY_JIRA_CLOUD_lock_OAUTH_REFRESH_TOKEN", "PSOXY_JIRA_CLOUD_OAUTH_REFRESH_TOKEN_lock"] {
        let parameter = aws_json(&moto, "AmazonSSM.GetParameter", json!({"Name": lock}))["Parameter"].clone();
        assert!(!parameter.is_null(), "{lock} was not deleted");
    }
}

/// AWS answers a value it refuses with a ValidationException that quotes it: psoxy's push
/// shows the error without the refresh token, the access token or the client secret, and
/// the AWS credentials never show either.
#[test]
fn psoxy_push_never_shows_a_value_aws_echoes() {
    let env = TestEnv::new();
    let moto = Moto::start();
    env.write_token(3600);
    let token = env.read_token();
    let upstream = moto.endpoint.clone();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let front = common::Server::start(move |request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let name = body["Name"].as_str().unwrap_or_default();
        let target = request.header("x-amz-target").unwrap_or_default();
        // The refresh token refused, quoted, with the secret key as if a proxy had echoed it.
        if target.ends_with(".PutParameter") && name == "PSOXY_JIRA_CLOUD_REFRESH_TOKEN" {
            let said = format!(
                "1 validation error detected: Value '{}' at 'value' failed to satisfy constraint \
                 (credential the-aws-secret-key)",
                body["Value"].as_str().unwrap_or_default(),
            );
            return common::Reply::Raw {
                status: 400,
                headers: vec![("Content-Type", "application/x-amz-json-1.1".to_owned())],
                body: json!({"__type": "ValidationException", "message": said}).to_string().into_bytes(),
            };
        }
        let client = reqwest::blocking::Client::builder().no_proxy().build().expect("client");
        let mut forward = client.post(&upstream).body(request.body.clone());
        for (name, value) in &request.headers {
            if !name.eq_ignore_ascii_case("host") && !name.eq_ignore_ascii_case("content-length") {
                forward = forward.header(name.as_str(), value.as_str());
            }
        }
        let answer = forward.send().expect("moto answers");
        let status = answer.status().as_u16();
        common::Reply::Raw {
            status,
            headers: vec![("Content-Type", "application/x-amz-json-1.1".to_owned())],
            body: answer.bytes().expect("body").to_vec(),
        }
    });
    let output = psoxy_command(&env, &moto, &["psoxy", "push", "aws-ssm:"])
        .env("AWS_ENDPOINT_URL", front.url(""))
        .env("AWS_SECRET_ACCESS_KEY", "the-aws-secret-key")
        .output()
        .expect("run");
    assert_ne!(output.status.code(), Some(0));
    let message = stderr(&output);
    assert!(message.contains("ValidationException") && message.contains("(redacted)"), "{message}");
    for secret in [
        token["refresh_token"].as_str().expect("rt"),
        token["access_token"].as_str().expect("at"),
        common::CLIENT_SECRET,
        "the-aws-secret-key",
    ] {
        assert!(!message.contains(secret), "{secret} shown: {message}");
    }
}
