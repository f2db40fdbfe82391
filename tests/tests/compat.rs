//! What real clients do that the everyday single-container path does not show (the
//! compatibility issue): each case reproduced through the raw API in the order the client that
//! exposed it sends its requests.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Wharfd;

/// docker-py's `containers.run(..., remove=True)`: start, open a followed log stream, wait,
/// remove, and only then read the stream. Everything the container wrote must arrive.
#[test]
fn a_followed_log_outlives_its_container() {
    let w = Wharfd::start();
    w.import_busybox("busybox:latest");
    for round in 0..10 {
        let body = br#"{"Image":"busybox","Cmd":["sh","-c","sleep 0.2; echo hello world"],"HostConfig":{"NetworkMode":"none"}}"#;
        let (st, _, b) = w.http("POST", "/containers/create", body);
        assert!(st.contains(" 201 "), "{st}");
        let id = serde_json::from_slice::<serde_json::Value>(&b).unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, _, _) = w.http("POST", &format!("/containers/{id}/start"), b"");
        assert!(st.contains(" 204 "), "{st}");
        let mut logs = UnixStream::connect(&w.sock).unwrap();
        write!(
            logs,
            "GET /containers/{id}/logs?follow=1&stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        // The answer's head arrives at once; the body is read only after the removal.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            logs.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let (st, _, b) = w.http("POST", &format!("/containers/{id}/wait"), b"");
        assert!(st.contains(" 200 "), "{st} {}", String::from_utf8_lossy(&b));
        let (st, _, _) = w.http("DELETE", &format!("/containers/{id}"), b"");
        assert!(st.contains(" 204 "), "{st}");
        logs.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Vec::new();
        logs.read_to_end(&mut raw).unwrap();
        let out = common::dechunk(&raw);
        // One stdout frame: 8 bytes of header, then the line.
        assert!(
            out.windows(12).any(|w| w == b"hello world\n"),
            "round {round}: the log stream lost the output: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
