//! Spool store comparison: kobra-relay's segment log versus redb, both fed
//! by the same concurrent appenders and both committing in groups (every
//! append waits for an fsync that covers it). Prints one table; run it on
//! the machine you care about, all rows come from the same run.

use std::{
    fs::OpenOptions,
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use kobra_relay::{
    spool::Spool,
    visit::{Envelope, Receipt},
};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use tokio::sync::{mpsc, oneshot};

const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/finish-visit-example.json");
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("spool");

fn envelope() -> Envelope {
    Envelope::new(
        Receipt {
            id: uuid::Uuid::now_v7(),
            received_at: jiff::Timestamp::now(),
            key_label: "bench".into(),
        },
        Bytes::from_static(FIXTURE),
    )
}

/// Latency of one 4 KiB write + fdatasync, the unit cost every design pays.
fn fdatasync_latency() -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("probe"))
        .expect("probe file");
    let block = vec![7u8; 4096];
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            file.write_all(&block).expect("write");
            file.sync_data().expect("fdatasync");
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

struct Row {
    appends_per_s: f64,
    per_fsync: f64,
    removes_per_s: f64,
}

async fn segment_log(concurrency: usize, total: usize) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let (spool, _) = Spool::open(dir.path(), 1 << 30).expect("spool");
    let started = Instant::now();
    let seqs = run_appenders(concurrency, total, {
        let spool = spool.clone();
        move || {
            let spool = spool.clone();
            async move { spool.append(envelope()).await.expect("append") }
        }
    })
    .await;
    let elapsed = started.elapsed();
    let removing = Instant::now();
    for seq in seqs {
        spool.remove(seq);
    }
    Row {
        appends_per_s: total as f64 / elapsed.as_secs_f64(),
        per_fsync: total as f64 / spool.commits() as f64,
        removes_per_s: total as f64 / removing.elapsed().as_secs_f64(),
    }
}

/// redb behind the same group-commit writer: one write transaction with
/// `Durability::Immediate` per batch of queued appends.
async fn redb_store(concurrency: usize, total: usize) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Database::create(dir.path().join("spool.redb")).expect("redb"));
    let commits = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Vec<u8>, oneshot::Sender<u64>)>();
    let writer_db = db.clone();
    let writer_commits = commits.clone();
    let writer = std::thread::spawn(move || {
        let mut next = 1u64;
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let txn = writer_db.begin_write().expect("txn");
            {
                let mut table = txn.open_table(TABLE).expect("table");
                for (i, (bytes, _)) in batch.iter().enumerate() {
                    table.insert(next + i as u64, bytes.as_slice()).expect("insert");
                }
            }
            txn.commit().expect("commit");
            writer_commits.fetch_add(1, Ordering::Relaxed);
            for (i, (_, done)) in batch.into_iter().enumerate() {
                let _ = done.send(next + i as u64);
            }
            next += 64 * 1024;
        }
    });
    let started = Instant::now();
    let seqs = run_appenders(concurrency, total, {
        let tx = tx.clone();
        move || {
            let tx = tx.clone();
            async move {
                let (done, result) = oneshot::channel();
                let mut bytes = Vec::with_capacity(FIXTURE.len() + 64);
                bytes.extend_from_slice(&[0u8; 64]);
                bytes.extend_from_slice(FIXTURE);
                tx.send((bytes, done)).expect("writer alive");
                result.await.expect("committed")
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    drop(tx);
    writer.join().expect("writer");
    // Removal after a confirm need not be durable: Durability::None commits.
    let removing = Instant::now();
    for seq in seqs {
        let mut txn = db.begin_write().expect("txn");
        txn.set_durability(Durability::None).expect("durability");
        {
            let mut table = txn.open_table(TABLE).expect("table");
            table.remove(seq).expect("remove");
        }
        txn.commit().expect("commit");
    }
    let removes = removing.elapsed();
    let read = db.begin_read().expect("read");
    drop(read);
    Row {
        appends_per_s: total as f64 / elapsed.as_secs_f64(),
        per_fsync: total as f64 / commits.load(Ordering::Relaxed) as f64,
        removes_per_s: total as f64 / removes.as_secs_f64(),
    }
}

async fn run_appenders<F, Fut>(concurrency: usize, total: usize, append: F) -> Vec<u64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let per_task = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let append = append.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    seqs.push(append().await);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.expect("appender"));
    }
    all
}

#[tokio::main]
async fn main() {
    let fsync = fdatasync_latency();
    println!("one 4 KiB write + fdatasync: p50 {:.2} ms", fsync.as_secs_f64() * 1e3);
    println!("appends of the 2.8 KB example visit; every append waits for its fsync\n");
    println!("| store | concurrency | appends/s | appends per fsync | removals/s |");
    println!("|---|---:|---:|---:|---:|");
    for concurrency in [1usize, 16, 128] {
        let total = if concurrency == 1 { 400 } else { 8000 };
        for (name, row) in [
            ("segment log", segment_log(concurrency, total).await),
            ("redb 4", redb_store(concurrency, total).await),
        ] {
            println!(
                "| {name} | {concurrency} | {:.0} | {:.1} | {:.0} |",
                row.appends_per_s, row.per_fsync, row.removes_per_s
            );
        }
    }
}
