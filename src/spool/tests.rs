use super::segment::segment_path;
use super::*;
use crate::visit::{Kind, Receipt};
use bytes::Bytes;
use std::io::{Seek, SeekFrom};

fn envelope(body: &str) -> Envelope {
    Envelope::new(
        Receipt {
            id: uuid::Uuid::now_v7(),
            received_at: Timestamp::now(),
            key_label: "test".into(),
        },
        Bytes::from(body.to_owned()),
    )
}

fn bodies(pending: &[Pending]) -> Vec<String> {
    pending
        .iter()
        .map(|p| String::from_utf8(p.envelope.body.to_vec()).expect("utf-8"))
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn appended_entries_are_pending_in_order_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(report, RecoveryReport::default());
        for i in 0..5 {
            spool
                .append(envelope(&format!("{{\"n\":{i}}}")))
                .await
                .expect("append");
        }
        let pending = spool.pending_after(None, 10).expect("pending");
        assert_eq!(
            bodies(&pending),
            (0..5).map(|i| format!("{{\"n\":{i}}}")).collect::<Vec<_>>()
        );
        assert_eq!(spool.stats().entries, 5);
    }
    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(report.pending, 5);
    let pending = spool.pending_after(None, 10).expect("pending");
    assert_eq!(bodies(&pending)[4], "{\"n\":4}");
    assert_eq!(pending[0].envelope.kind, Kind::Visit);
}

#[tokio::test]
async fn confirmed_entries_are_not_replayed_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
        let a = spool.append(envelope("{\"a\":1}")).await.expect("append");
        spool.append(envelope("{\"b\":2}")).await.expect("append");
        spool.remove(a);
        assert_eq!(spool.stats().entries, 1);
    }
    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!((report.pending, report.acknowledged), (1, 1));
    assert_eq!(
        bodies(&spool.pending_after(None, 10).expect("pending")),
        vec!["{\"b\":2}"]
    );
}

#[tokio::test]
async fn drained_segments_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
        let seq = spool.append(envelope("{}")).await.expect("append");
        spool.remove(seq);
    }
    // The segment of the first run is drained: recovery deletes it and the
    // second run starts a fresh one.
    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(report.pending, 0);
    assert_eq!(segment_files(dir.path()).len(), 1);
    let seq = spool.append(envelope("{}")).await.expect("append");
    drop(spool);
    let (spool, _) = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(spool.pending_after(None, 1).expect("pending")[0].seq, seq);
    assert_eq!(
        segment_files(dir.path()).len(),
        2,
        "the pending one and the new active one"
    );
    spool.remove(seq);
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "the drained one is gone at once"
    );
}

#[tokio::test]
async fn a_torn_tail_is_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
        spool
            .append(envelope("{\"keep\":1}"))
            .await
            .expect("append");
        spool
            .append(envelope("{\"torn\":2}"))
            .await
            .expect("append");
    }
    let segment = segment_files(dir.path()).remove(0);
    let len = fs::metadata(&segment).expect("meta").len();
    let file = OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    file.set_len(len - 3).expect("truncate");

    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("reopen after a torn write");
    assert_eq!(report.pending, 1);
    assert_eq!(report.damaged.len(), 1);
    assert!(
        report.quarantined.is_empty(),
        "a torn write was never acknowledged"
    );
    assert!(!dir.path().join("quarantine").exists());
    assert_eq!(
        bodies(&spool.pending_after(None, 10).expect("pending")),
        vec!["{\"keep\":1}"]
    );
}

#[tokio::test]
async fn corruption_in_the_middle_skips_only_the_damaged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
        for body in ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"] {
            spool.append(envelope(body)).await.expect("append");
        }
    }
    let segment = segment_files(dir.path()).remove(0);
    let mut bytes = fs::read(&segment).expect("read");
    let second = bytes
        .windows(7)
        .position(|w| w == b"{\"b\":2}")
        .expect("second body");
    bytes[second + 2] = b'X';
    let mut file = OpenOptions::new().write(true).open(&segment).expect("open");
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.write_all(&bytes).expect("write");

    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(
        bodies(&spool.pending_after(None, 10).expect("pending")),
        vec!["{\"a\":1}", "{\"c\":3}"]
    );
    // That record had been acknowledged: its bytes outlive the segment.
    let [copy] = &report.quarantined[..] else {
        panic!("one quarantined copy: {report:?}");
    };
    let kept = fs::read(copy).expect("quarantined bytes");
    assert!(
        kept.windows(7).any(|w| w == b"{\"X\":2}"),
        "the damaged record itself"
    );
    let remaining: Vec<u64> = spool
        .pending_after(None, 10)
        .expect("pending")
        .iter()
        .map(|p| p.seq)
        .collect();
    spool.remove_many(&remaining);
    assert!(
        segment_files(dir.path()).len() <= 1,
        "the damaged segment is gone"
    );
    assert_eq!(fs::read(copy).expect("still there"), kept);
    let seen = inspect(dir.path(), 0).expect("inspect");
    assert_eq!(seen.quarantined, vec![(copy.clone(), kept.len() as u64)]);
}

#[tokio::test]
async fn a_zeroed_tail_is_torn_but_a_damaged_last_record_is_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
        for body in ["{\"a\":1}", "{\"b\":2}"] {
            spool.append(envelope(body)).await.expect("append");
        }
    }
    let segment = segment_files(dir.path()).remove(0);
    let original = fs::read(&segment).expect("read");

    // A write that never reached the disk before a crash reads as zeros.
    let mut zeroed = original.clone();
    zeroed.extend_from_slice(&[0; 300]);
    fs::write(&segment, &zeroed).expect("write");
    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!((report.pending, report.damaged.len()), (2, 1));
    assert!(report.quarantined.is_empty(), "{report:?}");
    drop(spool);

    // The last record complete but its bytes changed: it was acknowledged.
    let mut flipped = original.clone();
    let last = flipped.len() - 2;
    flipped[last] ^= 0xff;
    for file in segment_files(dir.path()) {
        fs::remove_file(file).expect("clear");
    }
    fs::write(&segment, &flipped).expect("write");
    let (_spool, report) = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!((report.pending, report.damaged.len()), (1, 1));
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
}

#[tokio::test]
async fn garbage_files_do_not_stop_the_spool_from_opening() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        segment_path(dir.path(), 7),
        b"\0\0garbage that is not a record",
    )
    .expect("write");
    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("open");
    assert_eq!(report.pending, 0);
    assert_eq!(report.damaged.len(), 1);
    let seq = spool.append(envelope("{}")).await.expect("append");
    assert!(seq >= 1);
}

#[tokio::test]
async fn a_full_spool_refuses_without_writing_and_recovers_after_removal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = record::encoded_len(&envelope("{\"n\":0}")) as u64;
    let (spool, _) = Spool::open(dir.path(), one * 2).expect("open");
    let a = spool
        .append(envelope("{\"n\":0}"))
        .await
        .expect("first fits");
    spool
        .append(envelope("{\"n\":1}"))
        .await
        .expect("second fits");
    assert!(!spool.has_room_for(one));
    let err = spool
        .append(envelope("{\"n\":2}"))
        .await
        .expect_err("third does not");
    assert!(matches!(err, SpoolError::Full { .. }), "{err}");
    assert_eq!(spool.stats().entries, 2);
    assert!(spool.stats().full);

    spool.remove(a);
    assert!(!spool.stats().full);
    assert!(spool.has_room_for(one));
    spool
        .append(envelope("{\"n\":3}"))
        .await
        .expect("fits again");
}

#[tokio::test]
async fn a_closed_spool_refuses_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
    spool.close();
    assert!(matches!(
        spool.append(envelope("{}")).await,
        Err(SpoolError::Closed)
    ));
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
    assert!(matches!(
        Spool::open(dir.path(), 1 << 20),
        Err(SpoolError::Locked(_))
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, _) = Spool::open(dir.path(), 64 << 20).expect("open");
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(envelope(&format!("{{\"n\":{i}}}"))).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("join").expect("append");
    }
    assert_eq!(spool.stats().entries, 500);
    assert!(
        spool.commits() <= 250,
        "{} commits for 500 appends",
        spool.commits()
    );
}

#[tokio::test]
async fn entries_beyond_the_memory_cache_are_read_back_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, _) = Spool::open(dir.path(), 256 << 20).expect("open");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1 << 20));
    for _ in 0..40 {
        spool.append(envelope(&big)).await.expect("append");
    }
    let pending = spool.pending_after(None, 40).expect("pending");
    assert_eq!(pending.len(), 40);
    assert!(pending.iter().all(|p| p.envelope.body.len() == big.len()));
    let last = spool
        .get(pending[39].seq)
        .expect("get")
        .expect("still pending");
    assert_eq!(last.envelope.body, pending[39].envelope.body);
}

#[tokio::test]
async fn a_backlog_read_back_from_disk_keeps_every_entry_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Bodies of different lengths, about 200 KiB in all: gaps where
    // entries were confirmed in the first half, and a contiguous second
    // half longer than one read of consecutive records takes.
    let body = |i: usize| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "y".repeat(700 + i % 13));
    let kept: Vec<(u64, String)> = {
        let (spool, _) = Spool::open(dir.path(), 64 << 20).expect("open");
        for i in 0..300 {
            spool.append(envelope(&body(i))).await.expect("append");
        }
        let pending = spool.pending_after(None, 300).expect("pending");
        let confirmed: Vec<u64> = pending
            .iter()
            .map(|p| p.seq)
            .filter(|seq| (*seq < 100 && seq % 7 == 3) || (100..140).contains(seq))
            .collect();
        spool.remove_many(&confirmed);
        pending
            .iter()
            .filter(|p| !confirmed.contains(&p.seq))
            .map(|p| {
                (
                    p.seq,
                    String::from_utf8(p.envelope.body.to_vec()).expect("utf-8"),
                )
            })
            .collect()
    };
    assert!(kept.len() > 200);
    let (spool, _) = Spool::open(dir.path(), 64 << 20).expect("reopen");
    let read_back = |pending: Vec<Pending>| -> Vec<(u64, String)> {
        let seqs: Vec<u64> = pending.iter().map(|p| p.seq).collect();
        seqs.into_iter().zip(bodies(&pending)).collect()
    };
    assert_eq!(
        read_back(spool.pending_after(None, 300).expect("pending")),
        kept
    );
    let after = kept[50].0;
    assert_eq!(
        read_back(spool.pending_after(Some(after), 60).expect("pending")),
        kept[51..111].to_vec()
    );
}

#[test]
fn the_oldest_age_is_zero_when_empty_or_when_the_clock_went_back() {
    let now: Timestamp = "2026-11-26T12:00:00Z".parse().expect("timestamp");
    let stats = |oldest: Option<&str>| SpoolStats {
        oldest: oldest.map(|t| t.parse().expect("timestamp")),
        ..SpoolStats::default()
    };
    assert_eq!(stats(None).oldest_age(now), std::time::Duration::ZERO);
    assert_eq!(
        stats(Some("2026-11-26T11:59:30Z"))
            .oldest_age(now)
            .as_secs(),
        30
    );
    assert_eq!(
        stats(Some("2026-11-26T12:00:05Z")).oldest_age(now),
        std::time::Duration::ZERO
    );
}

#[tokio::test]
async fn inspection_reads_a_live_spool_without_changing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, _) = Spool::open(dir.path(), 1 << 20).expect("open");
    let first = spool.append(envelope("{\"a\":1}")).await.expect("append");
    for body in ["{\"b\":2}", "{\"c\":3}", "[4]"] {
        spool.append(envelope(body)).await.expect("append");
    }
    spool.remove(first);
    let files_before = segment_files(dir.path());

    let seen = inspect(dir.path(), 2).expect("inspect");
    assert!(seen.in_use, "the open spool holds the lock");
    assert_eq!((seen.stats.entries, seen.acknowledged), (3, 1));
    assert_eq!(seen.stats, {
        let mut live = spool.stats();
        live.full = false;
        live
    });
    let kept: Vec<&[u8]> = seen.oldest.iter().map(|(_, e)| &e.body[..]).collect();
    assert_eq!(kept, [&b"{\"b\":2}"[..], &b"{\"c\":3}"[..]]);
    assert!(seen.damaged.is_empty());
    assert_eq!(segment_files(dir.path()), files_before);

    drop(spool);
    let closed = inspect(dir.path(), 0).expect("inspect");
    assert!(!closed.in_use);
    assert_eq!(closed.stats.entries, 3);
    assert!(closed.oldest.is_empty());
}

#[tokio::test]
async fn a_spool_written_before_trace_contexts_is_recovered_and_extended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = super::record::version_1_bytes(
        1,
        uuid::Uuid::now_v7(),
        1_795_687_200_000_000_000,
        "kobra",
        b"{\"n\":1}",
    );
    fs::write(segment_path(dir.path(), 1), &old).expect("write");
    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("open");
    assert_eq!((report.pending, report.damaged.len()), (1, 0));
    let span = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("id"),
        opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").expect("id"),
        opentelemetry::trace::TraceFlags::SAMPLED,
        true,
        Default::default(),
    );
    spool
        .append(envelope("{\"n\":2}").in_trace(Some(span.clone())))
        .await
        .expect("append");
    drop(spool);
    let (spool, report) = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(report.pending, 2);
    let pending = spool.pending_after(None, 10).expect("pending");
    assert_eq!(bodies(&pending), ["{\"n\":1}", "{\"n\":2}"]);
    assert_eq!(pending[0].envelope.trace, None);
    assert_eq!(pending[0].envelope.receipt.key_label, "kobra");
    assert_eq!(pending[1].envelope.trace, Some(span));
}

/// An envelope carrying an ingress document of `json_len` bytes.
fn with_document(body: &str, json_len: usize) -> Envelope {
    let envelope = envelope(body);
    let document = crate::visit::Document {
        json: Bytes::from(vec![b' '; json_len]),
        product: crate::visit::ProductInfo {
            id: None,
            slug: "unknown".into(),
            name: None,
        },
        visit_id: None,
        agent_id: None,
        external_id: None,
        tag: None,
        warnings: Vec::new(),
    };
    Envelope {
        document: Some(Arc::new(document)),
        ..envelope
    }
}

#[tokio::test]
async fn the_cache_counts_the_documents_it_holds_and_gives_their_room_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, _) = Spool::open(dir.path(), 64 << 20).expect("open");
    assert!(spool.caches_appends(), "an empty cache takes appends");
    // One entry whose record and document fill the cache exactly.
    let filling = |body: &str| {
        let record_len = record::encoded_len(&envelope(body));
        with_document(body, writer::CACHE_MAX_BYTES as usize - record_len)
    };
    let first = spool.append(filling("{\"n\":1}")).await.expect("append");
    assert!(!spool.caches_appends(), "the document's bytes count");
    let pending = spool.pending_after(None, 1).expect("pending");
    assert!(
        pending[0].envelope.document.is_some(),
        "kept with the entry"
    );

    spool.remove(first);
    assert!(spool.caches_appends());
    // All of its room came back: the same weight fits again.
    spool.append(filling("{\"n\":2}")).await.expect("append");
    assert!(!spool.caches_appends());
    let pending = spool.pending_after(None, 1).expect("pending");
    assert!(
        pending[0].envelope.document.is_some(),
        "cached, not read back"
    );
}
