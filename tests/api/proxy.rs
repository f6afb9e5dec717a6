//! A TCP proxy on loopback between the relay and a RabbitMQ node that a
//! test can cut (close every connection and refuse new ones), turn into a
//! black hole (connections stay open but no byte crosses, as in a network
//! partition) and restore.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Cut,
    Blackhole,
}

/// The proxy; dropping it stops it.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<(Mode, u64)>,
    forwarding: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding 127.0.0.1:<random> to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let (mode, _) = watch::channel((Mode::Forward, 0));
        let forwarding = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            mode.clone(),
            forwarding.clone(),
        ));
        Self {
            addr,
            mode,
            forwarding,
            task,
        }
    }

    /// An AMQP URL through the proxy.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Closes every open connection and refuses new ones until restored.
    pub fn cut(&self) {
        self.set(Mode::Cut);
    }

    /// Stops every byte in both directions while keeping connections open,
    /// and accepts new connections without ever answering them: what a
    /// client sees of a network partition. [`Proxy::restore`] then closes
    /// the stalled connections (their peers have given up on them).
    pub fn blackhole(&self) {
        self.set(Mode::Blackhole);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.set(Mode::Forward);
    }

    /// Connections being forwarded right now.
    pub fn forwarding(&self) -> usize {
        self.forwarding.load(Ordering::SeqCst)
    }

    /// Every cut or black hole starts a new generation: connections born
    /// before it end even if the proxy was restored before they noticed.
    fn set(&self, mode: Mode) {
        self.mode.send_modify(|(m, generation)| {
            *m = mode;
            if mode != Mode::Forward {
                *generation += 1;
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Sender<(Mode, u64)>,
    forwarding: Arc<AtomicUsize>,
) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let mut changes = mode.subscribe();
        let (now, born) = *changes.borrow_and_update();
        match now {
            Mode::Cut => drop(client),
            Mode::Blackhole => {
                tokio::spawn(async move {
                    let _held = client;
                    let _ = changes.wait_for(|(m, _)| *m != Mode::Blackhole).await;
                });
            }
            Mode::Forward => {
                let forwarding = forwarding.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    forwarding.fetch_add(1, Ordering::SeqCst);
                    let changed = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => None,
                        changed = changes.wait_for(|(_, g)| *g != born) => changed.ok().map(|c| c.0),
                    };
                    forwarding.fetch_sub(1, Ordering::SeqCst);
                    if changed == Some(Mode::Blackhole) {
                        let _ = changes.wait_for(|(m, _)| *m != Mode::Blackhole).await;
                    }
                });
            }
        }
    }
}
