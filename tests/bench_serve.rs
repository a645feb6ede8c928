//! `cupool bench --serve`, the row server `benches/compare_torch.py --pair` drives: one request
//! per line on stdin, one JSON line per request on stdout.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `cupool` binary cargo built, or `$CUPOOL_EXE` where the tests run away from the build
/// tree (scripts/gpu-check.sh on a GPU machine, where cargo's path does not exist).
fn cupool_exe() -> PathBuf {
    std::env::var_os("CUPOOL_EXE").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cupool")), PathBuf::from)
}

#[test]
fn serve_answers_rows_reads_and_bad_requests_then_quits() {
    let mut child = Command::new(cupool_exe())
        .args(["bench", "--serve", "--device", "cpu", "--quick"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cupool starts");
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut ask = |request: &str| -> serde_json::Value {
        writeln!(stdin, "{request}").expect("request written");
        stdin.flush().expect("flushed");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reply read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{request:?} -> {line:?}: {e}"))
    };

    // batch1 is (1, 2048, 7, 7) in --quick too; GAP reads the input and writes (1, 2048).
    let got = ask("time\tbatch1\tgap mean(-2,-1)\tNCHW\tf32\t0.01");
    assert_eq!(got["status"], "ok", "{got}");
    assert_eq!(got["bytes"], (2048 * 49 + 2048) * 4);
    let samples = got["samples"].as_array().expect("samples");
    assert!(!samples.is_empty());
    assert!(samples.iter().all(|s| s.as_f64().is_some_and(|t| t > 0.0 && t < 1.0)), "{got}");

    // The same row again keeps its input; another layout and dtype makes a new one.
    assert_eq!(ask("time\tbatch1\tgap mean(-2,-1)\tNCHW\tf32\t0.005")["status"], "ok");
    let got = ask("time\tbatch1\tmax_pool2d_with_indices k3 s2 p1\tNHWC\tbf16\t0.005");
    assert_eq!(got["status"], "ok", "{got}");
    // bf16 input, bf16 values and i64 indices of the (1, 2048, 4, 4) output.
    assert_eq!(got["bytes"], 2048 * 49 * 2 + 2048 * 16 * (2 + 8));

    let read = ask("read");
    assert!(read["gbps"].as_f64().is_some_and(|g| g > 0.0), "{read}");

    for (request, why) in [
        ("time\tbatch1\tno such op\tNCHW\tf32\t0.01", "unknown op"),
        ("time\tnowhere\tgap mean(-2,-1)\tNCHW\tf32\t0.01", "unknown suite shape"),
        ("time\tbatch1\tgap mean(-2,-1)\tNCDHW\tf32\t0.01", "unknown layout"),
        ("time\tbatch1\tgap mean(-2,-1)\tNCHW\tf32\t-1", "seconds must be positive"),
        ("time\tlong_rows\tadaptive_avg_pool2d 2x2\tNCHW\tf32\t0.01", "does not run on"),
        ("hello", "bad request"),
    ] {
        let got = ask(request);
        let status = got["status"].as_str().expect("status");
        assert!(status.starts_with("n/a: ") && status.contains(why), "{request:?} -> {status}");
    }

    writeln!(stdin, "quit").expect("quit written");
    drop(stdin);
    assert!(child.wait().expect("cupool exits").success());
}

#[test]
fn serve_refuses_the_suite_options() {
    let out = Command::new(cupool_exe())
        .args(["bench", "--serve", "--device", "cpu", "--shapes", "seed"])
        .stdin(Stdio::null())
        .output()
        .expect("cupool runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--serve takes only --device and --quick"));
}
