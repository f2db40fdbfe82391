//! Docker's wire models (bollard-stubs) to the engine's own types and back, at the edge: the
//! engine knows no wire format. Each conversion is checked against data (`check(input,
//! expect)` tables below).

use bollard_stubs::models as m;
use serde_json::{json, Value};
use wharf_container::{ExecEntry, ExecSpec, UpdateBody};

/// `POST /containers/{id}/exec`'s body as what the engine runs.
pub fn exec_spec(c: m::ExecConfig) -> ExecSpec {
    let size = c
        .console_size
        .as_deref()
        .and_then(|s| match s {
            [h, w] => Some((u16::try_from(*h).ok()?, u16::try_from(*w).ok()?)),
            _ => None,
        })
        .filter(|(h, w)| *h > 0 && *w > 0);
    ExecSpec {
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
        privileged: c.privileged.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        stdin: c.attach_stdin.unwrap_or(false),
        stdout: c.attach_stdout.unwrap_or(false),
        stderr: c.attach_stderr.unwrap_or(false),
        detach_keys: c.detach_keys.filter(|k| !k.is_empty()),
        console_size: size,
    }
}

/// `POST /containers/{id}/update`'s body (its keys already matched as Go matches them): the
/// limits `Resources` holds that a running container can change, and the restart policy.
pub fn update(v: Value) -> Result<UpdateBody, String> {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(flatten)]
        resources: m::Resources,
        #[serde(rename = "RestartPolicy", default)]
        restart_policy: Option<m::RestartPolicy>,
    }
    let b: Body = serde_json::from_value(v).map_err(|e| format!("invalid JSON: {e}"))?;
    let r = b.resources;
    Ok(UpdateBody {
        cpu_shares: r.cpu_shares,
        nano_cpus: r.nano_cpus,
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        memory: r.memory,
        memory_swap: r.memory_swap,
        memory_reservation: r.memory_reservation,
        blkio_weight: r.blkio_weight,
        pids_limit: r.pids_limit,
        // A policy without a name changes nothing, as in dockerd.
        restart_policy: b
            .restart_policy
            .and_then(|p| Some((p.name?.to_string(), p.maximum_retry_count.unwrap_or(0)))),
    })
}

/// `GET /exec/{id}/json`, as dockerd renders an exec.
pub fn exec_inspect(x: &ExecEntry) -> Value {
    let c = &x.config;
    json!({
        "ID": x.id,
        "Running": x.running,
        "ExitCode": x.exit_code,
        "ProcessConfig": {
            "tty": c.tty,
            "entrypoint": c.cmd.first().cloned().unwrap_or_default(),
            "arguments": c.cmd.get(1..).map(|a| a.to_vec()).unwrap_or_default(),
            "privileged": c.privileged,
            "user": c.user.clone().unwrap_or_default(),
        },
        "OpenStdin": c.stdin,
        "OpenStderr": c.stderr,
        "OpenStdout": c.stdout,
        "CanRemove": false,
        "ContainerID": x.container,
        "DetachKeys": c.detach_keys.clone().unwrap_or_default(),
        "Pid": x.pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: Value, expect: ExecSpec) {
        let c: m::ExecConfig = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(exec_spec(c), expect, "{input}");
    }

    #[test]
    fn exec_configs() {
        let cmd = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        check(
            json!({"Cmd": ["ls", "-l"]}),
            ExecSpec {
                cmd: cmd(&["ls", "-l"]),
                ..Default::default()
            },
        );
        check(
            json!({"Cmd": ["sh"], "Tty": true, "AttachStdin": true, "AttachStdout": true,
                   "AttachStderr": false, "Env": ["A=1"], "User": "1000:1000", "WorkingDir": "/w",
                   "Privileged": true, "DetachKeys": "ctrl-a", "ConsoleSize": [24, 80]}),
            ExecSpec {
                cmd: cmd(&["sh"]),
                env: cmd(&["A=1"]),
                working_dir: Some("/w".into()),
                user: Some("1000:1000".into()),
                privileged: true,
                tty: true,
                stdin: true,
                stdout: true,
                stderr: false,
                detach_keys: Some("ctrl-a".into()),
                console_size: Some((24, 80)),
            },
        );
        // Empty strings are unset, as dockerd reads them; a size that is no size is none.
        check(
            json!({"Cmd": [], "User": "", "WorkingDir": "", "DetachKeys": "", "ConsoleSize": [0, 80]}),
            ExecSpec::default(),
        );
        check(json!({"ConsoleSize": [-1, 5]}), ExecSpec::default());
        check(json!({"ConsoleSize": [70000, 5]}), ExecSpec::default());
    }

    #[test]
    fn update_bodies() {
        let check = |input: Value, expect: UpdateBody| {
            assert_eq!(update(input.clone()).unwrap(), expect, "{input}");
        };
        check(json!({}), UpdateBody::default());
        check(
            json!({"Memory": 67108864, "MemorySwap": -1, "CpuShares": 512, "CpusetCpus": "0",
                   "BlkioWeight": 300, "PidsLimit": 0, "NanoCpus": 500000000,
                   "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}),
            UpdateBody {
                memory: Some(67108864),
                memory_swap: Some(-1),
                cpu_shares: Some(512),
                cpuset_cpus: Some("0".into()),
                blkio_weight: Some(300),
                pids_limit: Some(0),
                nano_cpus: Some(500000000),
                restart_policy: Some(("on-failure".into(), 3)),
                ..Default::default()
            },
        );
        check(
            json!({"RestartPolicy": {"MaximumRetryCount": 3}}),
            UpdateBody::default(),
        );
        check(
            json!({"RestartPolicy": {"Name": ""}}),
            UpdateBody {
                restart_policy: Some((String::new(), 0)),
                ..Default::default()
            },
        );
        assert!(update(json!({"Memory": "lots"}))
            .unwrap_err()
            .starts_with("invalid JSON"));
    }

    #[test]
    fn exec_inspect_reads_as_dockerd() {
        let x = ExecEntry {
            id: "e1".into(),
            container: "c1".into(),
            config: ExecSpec {
                cmd: vec!["ls".into(), "-l".into()],
                stdout: true,
                ..Default::default()
            },
            running: false,
            exit_code: Some(0),
            pid: 0,
            exited_at: None,
        };
        let v = exec_inspect(&x);
        assert_eq!(v["ProcessConfig"]["entrypoint"], "ls");
        assert_eq!(v["ProcessConfig"]["arguments"], json!(["-l"]));
        assert_eq!(v["ProcessConfig"]["user"], "");
        assert_eq!(
            (v["OpenStdout"].clone(), v["OpenStdin"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(v["ExitCode"], 0);
        assert_eq!(v["DetachKeys"], "");
    }
}
