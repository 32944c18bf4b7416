//! `PipedRdd` (Spark's `PipedRDD`), made by `pipe`: each partition's elements written, one
//! per line, to the standard input of an external command, and its standard output read
//! back as lines.
//!
//! One `OneToOne` dependency; no partitioner. The command runs once per computed partition
//! (again when the partition is recomputed), with no shell: the program and its arguments
//! are given apart. Its output is read whole before the partition is handed on.

use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use super::iter::boxed;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

pub(crate) struct PipedRdd<T: Data> {
    parent: Rdd<T>,
    command: Vec<String>,
    env: Vec<(String, String)>,
}

impl<T: Data + Display> PipedRdd<T> {
    pub(crate) fn new(parent: Rdd<T>, command: Vec<String>, env: Vec<(String, String)>) -> Self {
        PipedRdd {
            parent,
            command,
            env,
        }
    }

    fn fail(&self, what: String) -> Error {
        Error::Io {
            op: "pipe",
            path: self.command[0].clone().into(),
            source: std::io::Error::other(format!("{} {what}", shown(&self.command))),
        }
    }
}

/// The command as a user would type it.
fn shown(command: &[String]) -> String {
    command
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A child process that is killed and waited for when dropped, unless it already exited.
struct Reaped(Option<std::process::Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take()
            && !matches!(child.try_wait(), Ok(Some(_)))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl<T: Data + Display> Compute<String> for PipedRdd<T> {
    fn name(&self) -> &'static str {
        "PipedRdd"
    }
    fn num_partitions(&self) -> usize {
        self.parent.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::one_to_one(self.parent.node.clone())]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<String>> {
        let input = self.parent.node.iterator(split, tc)?;
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.fail(format!("could not start: {e}")))?;
        // Killed and reaped if the task ends before the command does (a failure upstream,
        // a cancelled job): no command outlives its attempt, no zombie is left.
        let mut child = Reaped(Some(child));
        let child = child.0.as_mut().expect("present until dropped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // Output and errors are read on their own threads while this one writes, so that a
        // command that writes before it has read everything never blocks.
        let reader = std::thread::spawn(move || -> std::io::Result<Vec<String>> {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).split(b'\n') {
                let mut line = line?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push(String::from_utf8_lossy(&line).into_owned());
            }
            Ok(lines)
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = (&mut stderr).take(64 << 10).read_to_string(&mut text);
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            text
        });
        let mut written: std::io::Result<()> = Ok(());
        {
            let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("stdin is piped"));
            for x in input {
                written = writeln!(stdin, "{x}");
                if written.is_err() {
                    break;
                }
            }
            if written.is_ok() {
                written = stdin.flush();
            }
        }
        // Waits for the command's exit, checking for cancellation meanwhile (the drop
        // guard kills the command when the check unwinds).
        let mut pause = std::time::Duration::from_micros(50);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {
                    tc.job().check_unwind();
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(self.fail(format!("could not be waited for: {e}"))),
            }
        };
        let lines = reader.join().unwrap_or_else(|_| Ok(Vec::new()));
        let stderr = errors.join().unwrap_or_default();
        if !status.success() {
            let detail = stderr.trim();
            return Err(self.fail(format!(
                "exited with {status} on partition {split}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            )));
        }
        let lines = lines.map_err(|e| self.fail(format!("output could not be read: {e}")))?;
        // A command that succeeds without reading all its input (`head`) closes the pipe
        // early; like a shell pipeline, that is not an error.
        if let Err(e) = written
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(self.fail(format!("input could not be written: {e}")));
        }
        Ok(boxed(lines.into_iter()))
    }
}

impl<T: Data + Display> Rdd<T> {
    /// Pipes each partition through an external command (Spark's `pipe`): the elements are
    /// written to its standard input one per line (by `Display`), and its standard output
    /// lines are the new elements. `command` is the program and its arguments (no shell:
    /// use `["sh", "-c", "..."]` for one). The command runs once per computed partition; an
    /// exit status other than success fails the action with an error that names the
    /// command, the partition and the first 64 KiB of its standard error.
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// # let ctx = flintlock::Context::new();
    /// let words = ctx.parallelize(vec!["b", "a", "c"], 1);
    /// assert_eq!(words.pipe(["sort"]).collect()?, vec!["a", "b", "c"]);
    /// # }
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `command` is empty.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn pipe<S: Into<String>>(&self, command: impl IntoIterator<Item = S>) -> Rdd<String> {
        self.pipe_with_env(command, Vec::<(String, String)>::new())
    }

    /// [`Rdd::pipe`] with environment variables added to the command's environment.
    ///
    /// # Panics
    /// When `command` is empty.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn pipe_with_env<S: Into<String>, K: Into<String>, V: Into<String>>(
        &self,
        command: impl IntoIterator<Item = S>,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Rdd<String> {
        let command: Vec<String> = command.into_iter().map(Into::into).collect();
        assert!(!command.is_empty(), "pipe: the command must name a program");
        let env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Rdd::make(
            self.context(),
            super::site("pipe"),
            PipedRdd::new(self.clone(), command, env),
        )
    }
}
