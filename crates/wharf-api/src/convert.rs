//! Docker's wire models (bollard-stubs) to the engine's own types and back, at the edge: the
//! engine knows no wire format. Each conversion is checked against data (`check(input,
//! expect)` tables below).

use bollard_stubs::models as m;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wharf_container::config::{Config, HostSpec};
use wharf_container::mounts::ImageMount;
use wharf_container::{ContainerSpec, ExecEntry, ExecSpec, UpdateBody};

/// `POST /containers/create`'s body (its keys already matched as Go matches them): Docker's
/// container config with `HostConfig` and `NetworkingConfig`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateBody {
    /// The container config.
    #[serde(flatten)]
    pub config: m::ContainerConfig,
    /// The host config.
    #[serde(rename = "HostConfig", default)]
    pub host_config: Option<m::HostConfig>,
    /// The networks to join, with their endpoint settings.
    #[serde(rename = "NetworkingConfig", default)]
    pub networking_config: Option<Value>,
}

/// One model as another of the same stored shape: Docker's models and the engine's types
/// share their field names (the engine stores Docker's names), so every field crosses.
fn transcode<T: Serialize, U: DeserializeOwned>(from: &T) -> U {
    serde_json::to_value(from)
        .and_then(serde_json::from_value)
        .expect("the engine's types take every value Docker's models hold")
}

/// Docker's create body as what the engine makes; `image_mounts` are the mounts of type
/// `image` the edge took out of `HostConfig.Mounts`.
pub fn container_spec(b: CreateBody, image_mounts: Vec<ImageMount>) -> ContainerSpec {
    ContainerSpec {
        config: transcode(&b.config),
        host: transcode(&b.host_config.unwrap_or_default()),
        networks: b.networking_config,
        image_mounts,
        snapshot: None,
    }
}

/// The engine's container config as inspect's `Config`.
pub fn config_view(c: &Config) -> m::ContainerConfig {
    transcode(c)
}

/// The engine's host spec as inspect's `HostConfig`.
pub fn host_config_view(h: &HostSpec) -> m::HostConfig {
    transcode(h)
}

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

    fn check_create(input: Value, expect: ContainerSpec) {
        let b: CreateBody = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(container_spec(b, vec![]), expect, "{input}");
    }

    #[test]
    fn create_bodies() {
        use wharf_container::config::*;
        let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        check_create(json!({}), ContainerSpec::default());
        let mut want = ContainerSpec::default();
        want.config.image = Some("busybox".into());
        want.config.cmd = strings(&["sh", "-c", "true"]);
        want.config.env = strings(&["A=1"]);
        want.config.exposed_ports = Some([("80/tcp".to_string(), Empty {})].into());
        want.config.healthcheck = Some(HealthConfig {
            test: strings(&["CMD", "true"]),
            interval: Some(5_000_000_000),
            ..Default::default()
        });
        want.networks = Some(json!({"EndpointsConfig": {"a": {"Aliases": ["x"]}}}));
        check_create(
            json!({"Image": "busybox", "Cmd": ["sh", "-c", "true"], "Env": ["A=1"],
                   "ExposedPorts": {"80/tcp": {}},
                   "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5000000000u64},
                   "NetworkingConfig": {"EndpointsConfig": {"a": {"Aliases": ["x"]}}}}),
            want,
        );
        // Each part of HostConfig lands in its group, the irregular names too.
        let mut want = ContainerSpec::default();
        let h = &mut want.host;
        h.resources.memory = Some(1 << 26);
        h.resources.blkio_device_read_iops = Some(vec![ThrottleDevice {
            path: Some("/dev/sda".into()),
            rate: Some(5),
        }]);
        h.resources.io_maximum_iops = Some(3);
        h.resources.oom_score_adj = Some(100);
        h.storage.binds = strings(&["/a:/b:ro"]);
        h.storage.mounts = Some(vec![Mount {
            typ: Some(MountType::Bind),
            source: Some("/a".into()),
            target: Some("/c".into()),
            bind_options: Some(BindOptions {
                propagation: Some(Propagation::Rslave),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        h.network.network_mode = Some("none".into());
        h.network.port_bindings = Some(
            [(
                "80/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some("8080".into()),
                }]),
            )]
            .into(),
        );
        h.security.cap_add = strings(&["NET_ADMIN"]);
        h.namespaces.uts_mode = Some("host".into());
        h.namespaces.cgroupns_mode = Some(CgroupnsMode::Private);
        h.lifecycle.restart_policy = Some(RestartPolicy {
            name: Some(RestartPolicyName::OnFailure),
            maximum_retry_count: Some(3),
        });
        h.lifecycle.auto_remove = Some(true);
        h.lifecycle.container_id_file = Some("/tmp/cid".into());
        check_create(
            json!({"HostConfig": {
                "Memory": 67108864, "BlkioDeviceReadIOps": [{"Path": "/dev/sda", "Rate": 5}],
                "IOMaximumIOps": 3, "OomScoreAdj": 100, "Binds": ["/a:/b:ro"],
                "Mounts": [{"Type": "bind", "Source": "/a", "Target": "/c",
                            "BindOptions": {"Propagation": "rslave"}}],
                "NetworkMode": "none",
                "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
                "CapAdd": ["NET_ADMIN"], "UTSMode": "host", "CgroupnsMode": "private",
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "AutoRemove": true, "ContainerIDFile": "/tmp/cid"}}),
            want,
        );
    }

    /// Every field Docker's models hold crosses to the engine and back unchanged (the host
    /// config of a record written before the engine had its own types, every field set).
    #[test]
    fn every_field_crosses_both_ways() {
        let rec: Value = serde_json::from_str(include_str!("../tests/fixtures/records/web.config.v2.json")).unwrap();
        let mut stored = rec["host_config"].clone();
        // What that record leaves unset, set here, every nested option too.
        for (k, v) in [
            ("DeviceCgroupRules", json!(["c 1:3 mr"])),
            (
                "DeviceRequests",
                json!([{"Driver": "nvidia", "Count": -1, "DeviceIDs": ["0"],
                                       "Capabilities": [["gpu"]], "Options": {"a": "b"}}]),
            ),
            ("KernelMemoryTCP", json!(1024)),
            ("MemorySwappiness", json!(60)),
            ("VolumesFrom", json!(["db:ro"])),
            ("Links", json!(["/db:/web/db"])),
            ("StorageOpt", json!({"size": "1G"})),
            ("BlkioWeightDevice", json!([{"Path": "/dev/sda", "Weight": 200}])),
            ("BlkioDeviceWriteIOps", json!([{"Path": "/dev/sda", "Rate": 7}])),
        ] {
            stored[k] = v;
        }
        stored["Mounts"].as_array_mut().unwrap().extend([
            json!({"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": true,
                   "Consistency": "cached", "BindOptions": {"Propagation": "rshared",
                   "NonRecursive": true, "CreateMountpoint": true, "ReadOnlyNonRecursive": true,
                   "ReadOnlyForceRecursive": false}}),
            json!({"Type": "volume", "Source": "v", "Target": "/v", "VolumeOptions": {
                   "NoCopy": true, "Subpath": "s", "Labels": {"l": "1"},
                   "DriverConfig": {"Name": "local", "Options": {"o": "bind"}}}}),
            json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1, "Mode": 448,
                   "Options": [["exec"], ["uid", "1"]]}}),
        ]);
        let hc: m::HostConfig = serde_json::from_value(stored).unwrap();
        let cfg: m::ContainerConfig = serde_json::from_value(rec["config"].clone()).unwrap();
        let n = serde_json::to_value(&hc).unwrap().as_object().unwrap().len();
        assert_eq!(n, 70, "every field of Docker's HostConfig is set");
        let mut body = serde_json::to_value(&cfg).unwrap();
        body["HostConfig"] = serde_json::to_value(&hc).unwrap();
        let spec = container_spec(serde_json::from_value(body).unwrap(), vec![]);
        assert_eq!(
            serde_json::to_value(host_config_view(&spec.host)).unwrap(),
            serde_json::to_value(&hc).unwrap()
        );
        assert_eq!(
            serde_json::to_value(config_view(&spec.config)).unwrap(),
            serde_json::to_value(&cfg).unwrap()
        );
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
