//! The server process a process benchmark measures (`chat`, `notify`): started on a free port,
//! ready once it logs `listening on`, killed when dropped. Included with `#[path]`; the bench
//! declares `mod port` (the workspace's `free_port`) at its root.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running server; killed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program ARGS --listen 127.0.0.1:PORT` (and `--data-dir` a fresh temporary directory
/// when `data_dir`), its log at `info` on stdout, and waits for its `listening on` line.
pub(crate) fn start(program: impl AsRef<OsStr>, args: &[&str], data_dir: bool) -> Server {
    let listen = format!("127.0.0.1:{}", crate::port::free_port());
    let mut cmd = Command::new(program);
    cmd.args(args).args(["--listen", &listen]);
    let dir = data_dir.then(|| tempfile::tempdir().unwrap());
    if let Some(d) = &dir {
        cmd.arg("--data-dir").arg(d.path());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("STARLING_LOG", "info")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let l = lines.next().expect("server exited").unwrap();
        if l.contains("listening on") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        addr: listen.parse().unwrap(),
        _dir: dir,
    }
}
