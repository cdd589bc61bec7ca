//! `versions`: the version rule on the leader. A new file starts at 1; each
//! update must be exactly current+1 (stale, repeated and skipped versions get
//! `False` and change nothing); a tombstone `["0"]` is versioned like any
//! update; an unknown file is version 0 and absent from the map; hashlists
//! (strings, ints, base64 digests, empty, unicode) and awkward filenames
//! round-trip exactly.

use std::sync::Arc;

use super::{hashes, info_text, Ctx};
use crate::tester::error::{Result, TesterError};
use crate::tester::fmt;
use crate::xmlrpc::Value;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let l = ctx.leader().await?;
    let f = ctx.file("versions.txt");
    let new = ctx.file("never-created.txt");
    let ints = ctx.file("ints");
    let digests = ctx.file("digests");
    let empty = ctx.file("empty");
    let weird = ctx.file("dír/ünï <&>\"' 😀 \t x.txt");

    ctx.step("unknown files are version 0");
    ctx.expect(l, "tester_getversion", &[f.as_str().into()], Value::Int(0))
        .await?;
    let map = ctx.read_map(l).await?;
    absent(&ctx, l, &map, &f)?;

    ctx.step("create, next, stale, skipped");
    ctx.update(
        l,
        &f,
        1,
        hashes(&["h1", "h2"]),
        true,
        "creating a new file at version 1",
    )
    .await?;
    ctx.update(l, &f, 1, hashes(&["x"]), false, "version 1 again is stale")
        .await?;
    ctx.update(l, &f, 3, hashes(&["x"]), false, "3 skips version 2")
        .await?;
    ctx.update(
        l,
        &f,
        0,
        hashes(&["x"]),
        false,
        "version 0 is never current+1",
    )
    .await?;
    ctx.update(
        l,
        &f,
        -1,
        hashes(&["x"]),
        false,
        "a negative version is never current+1",
    )
    .await?;
    ctx.update(l, &f, 2, hashes(&["h3"]), true, "2 is current+1")
        .await?;
    ctx.update(l, &f, 1, hashes(&["x"]), false, "1 is older than current 2")
        .await?;
    ctx.update(
        l,
        &new,
        2,
        hashes(&["x"]),
        false,
        "a new file must start at 1",
    )
    .await?;
    ctx.expect(l, "tester_getversion", &[f.as_str().into()], Value::Int(2))
        .await?;

    ctx.step("tombstones");
    ctx.update(
        l,
        &f,
        3,
        hashes(&["0"]),
        true,
        "a tombstone is versioned like any update",
    )
    .await?;
    ctx.update(
        l,
        &f,
        3,
        hashes(&["y"]),
        false,
        "version 3 is taken by the tombstone",
    )
    .await?;
    let map = ctx.read_map(l).await?;
    expect_info(&ctx, l, &map, &f, 3, hashes(&["0"]))?;
    ctx.update(
        l,
        &f,
        4,
        hashes(&["h4"]),
        true,
        "a deleted file comes back at current+1",
    )
    .await?;

    ctx.step("hashlists and filenames round-trip");
    let int_list = vec![Value::Int(1), Value::Int(2), Value::Int(3)];
    ctx.update(
        l,
        &ints,
        1,
        int_list.clone(),
        true,
        "creating a new file at version 1",
    )
    .await?;
    // `hashlib.sha256(b"x").digest()` from a Python client arrives as base64.
    let digest = crate::node::command::parse_sha256_hex(&crate::node::blocks::hash_hex(b"x"))
        .expect("a SHA-256 is 64 hex digits");
    let digest_list = vec![
        Value::Base64(digest.to_vec()),
        Value::String(crate::node::command::sha256_hex(&digest)),
    ];
    ctx.update(
        l,
        &digests,
        1,
        digest_list.clone(),
        true,
        "a hashlist of a base64 digest and its hex",
    )
    .await?;
    ctx.update(
        l,
        &empty,
        1,
        Vec::new(),
        true,
        "an empty hashlist is a hashlist",
    )
    .await?;
    let weird_hashes = hashes(&["ä\u{1F600}", "<&>", "  spaced  "]);
    ctx.update(
        l,
        &weird,
        1,
        weird_hashes.clone(),
        true,
        "any text is a filename",
    )
    .await?;

    let map = ctx.read_map(l).await?;
    expect_info(&ctx, l, &map, &f, 4, hashes(&["h4"]))?;
    expect_info(&ctx, l, &map, &ints, 1, int_list)?;
    expect_info(&ctx, l, &map, &digests, 1, digest_list)?;
    expect_info(&ctx, l, &map, &empty, 1, Vec::new())?;
    expect_info(&ctx, l, &map, &weird, 1, weird_hashes)?;
    absent(&ctx, l, &map, &new)?;
    ctx.expect(
        l,
        "tester_getversion",
        &[new.as_str().into()],
        Value::Int(0),
    )
    .await?;
    ctx.expect(
        l,
        "tester_getversion",
        &[weird.as_str().into()],
        Value::Int(1),
    )
    .await?;
    ctx.check_ledger(l, &map)?;
    ctx.note("15 updates judged by the version rule; 6 files read back exactly");
    Ok(())
}

fn expect_info(
    ctx: &Ctx,
    l: usize,
    map: &std::collections::BTreeMap<String, (i64, Vec<Value>)>,
    file: &str,
    version: i64,
    hashlist: Vec<Value>,
) -> Result<()> {
    let want = (version, hashlist);
    if map.get(file) == Some(&want) {
        return Ok(());
    }
    Err(TesterError::check(
        ctx.describe(l, "getfileinfomap", &[]),
        format!("{}: {}", fmt::string(file), info_text(Some(&want))),
        format!("{}: {}", fmt::string(file), info_text(map.get(file))),
    ))
}

fn absent(
    ctx: &Ctx,
    l: usize,
    map: &std::collections::BTreeMap<String, (i64, Vec<Value>)>,
    file: &str,
) -> Result<()> {
    match map.get(file) {
        None => Ok(()),
        Some(info) => Err(TesterError::check(
            ctx.describe(l, "getfileinfomap", &[]),
            format!("no entry for {} (never written)", fmt::string(file)),
            format!("{}: {}", fmt::string(file), info_text(Some(info))),
        )),
    }
}
