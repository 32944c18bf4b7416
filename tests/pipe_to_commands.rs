//! `pipe`: elements go to a command's standard input one per line and its output lines come
//! back; a failing or missing command is an error naming it, the partition and its stderr.
#![cfg(unix)]

use flintlock::Context;

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

#[test]
fn each_partition_goes_through_the_command() {
    let ctx = ctx();
    let rdd = ctx.parallelize(vec![3, 1, 2, 6, 5, 4], 2);
    // One `sort` per partition: each partition sorted on its own.
    assert_eq!(
        rdd.pipe(["sort", "-n"]).glom().collect().unwrap(),
        vec![vec!["1", "2", "3"], vec!["4", "5", "6"]]
    );
    // Output of any length, including none; an empty partition still runs the command.
    let lines = rdd
        .pipe(["sh", "-c", "wc -l | tr -d ' '"])
        .collect()
        .unwrap();
    assert_eq!(lines, vec!["3", "3"]);
    let none = ctx.empty::<u8>().pipe(["cat"]);
    assert_eq!(none.count().unwrap(), 0);
    // Environment variables, and lines with spaces and non-ASCII text.
    let words = ctx.parallelize(vec!["a b", "ünï"], 1);
    let out = words
        .pipe_with_env(
            ["sh", "-c", "while read l; do echo \"$PREFIX$l\"; done"],
            [("PREFIX", "> ")],
        )
        .collect()
        .unwrap();
    assert_eq!(out, vec!["> a b", "> ünï"]);
}

#[test]
fn a_command_that_reads_only_part_of_its_input_is_not_an_error() {
    let ctx = ctx();
    let big = ctx.range(0..200_000, 1);
    assert_eq!(
        big.pipe(["head", "-n", "2"]).collect().unwrap(),
        vec!["0", "1"]
    );
}

#[test]
fn failing_and_missing_commands_are_errors_that_name_them() {
    let ctx = ctx();
    let rdd = ctx.parallelize(vec![1, 2, 3], 3);
    let err = rdd
        .pipe(["sh", "-c", "echo broken >&2; exit 3"])
        .collect()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exit status: 3") && err.contains("broken"),
        "{err}"
    );
    assert!(err.contains("sh -c"), "{err}");
    let err = rdd
        .pipe(["no-such-command-flintlock"])
        .count()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-command-flintlock") && err.contains("could not start"),
        "{err}"
    );
    // The context still works.
    assert_eq!(rdd.pipe(["cat"]).count().unwrap(), 3);
}
