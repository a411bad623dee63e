//! Several client machines against the in-memory daemon core (`xsio-xenstored`), bytes
//! shuttled in memory in random cuts and a random interleaving: the two sides agree on the
//! wire (no protocol errors), every operation completes exactly once and succeeds (or finds
//! nothing: ENOENT), transactions commit (retried when they conflict), and watch events reach
//! the watch that asked, starting with the initial fire.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::time::Instant;

use proptest::prelude::*;
use xsio_core::{Input, OpId};
use xsio_xenstored::{ConnId, Origin, Server};
use xsio_xs_client::{Client, Config, Error, Output, Response, TxOp, WatchEvent};
use xsio_xs_wire::ErrorKind;

struct Peer {
    client: Client,
    conn: ConnId,
    to_server: VecDeque<u8>,
    to_client: VecDeque<u8>,
    done: BTreeMap<OpId, Vec<Result<Response, Error>>>,
    events: Vec<WatchEvent>,
    issued: Vec<OpId>,
    watch: Option<OpId>,
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

fn drain(peer: &mut Peer) {
    while let Some(output) = peer.client.poll_output() {
        match output {
            Output::Transmit(t) => peer.to_server.extend(&t.bytes[..]),
            Output::Done { id, result } => peer.done.entry(id).or_default().push(result),
            Output::Event(e) => peer.events.push(e),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn issue(peer: &mut Peer, index: usize, rng: &mut Rng, now: Instant) {
    let key = format!("/shared/k{}", rng.below(3));
    let op = match rng.below(7) {
        0 => peer.client.read(now, None, &key),
        1 => peer.client.write(now, None, &key, format!("c{index}")),
        2 => peer.client.directory(now, None, "/shared"),
        3 | 4 => peer.client.transact(
            now,
            vec![
                TxOp::Read("/shared".into()),
                TxOp::Write(key.clone(), format!("tx{index}").into()),
                TxOp::Write("/shared/last".into(), format!("{index}").into()),
            ],
        ),
        5 => peer.client.exists(now, None, &key),
        _ => peer.client.get_domain_path(now, index as u32),
    };
    peer.issued.push(op);
}

#[allow(clippy::disallowed_methods)] // A test epoch.
fn run(seed: u64, n_clients: usize, steps: usize) {
    let now = Instant::now(); // tidy:allow (a test epoch)
    let mut server = Server::new(xsio_xenstored::Config::default(), now);
    let mut rng = Rng(seed | 1);
    let mut config = Config::default();
    config.transact_attempts = 50;
    let mut peers: Vec<Peer> = (0..n_clients)
        .map(|_| Peer {
            client: Client::new(config.clone(), now),
            conn: server.connect(now, Origin::Socket),
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            done: BTreeMap::new(),
            events: Vec::new(),
            issued: Vec::new(),
            watch: None,
        })
        .collect();
    // Every client watches /shared first; the shared parent exists.
    for peer in &mut peers {
        let w = peer.client.watch(now, "/shared", "w");
        peer.issued.push(w);
        peer.watch = Some(w);
        drain(peer);
    }
    let setup = peers[0].client.write(now, None, "/shared", "");
    peers[0].issued.push(setup);
    let mut budget = steps;
    for iteration in 0.. {
        assert!(
            iteration < 1_000_000,
            "no progress: an operation waits for ever"
        );
        let busy = peers.iter().any(|p| {
            !p.to_server.is_empty() || !p.to_client.is_empty() || p.client.ops_in_flight() > 0
        });
        if budget == 0 && !busy {
            break;
        }
        let i = rng.below(peers.len());
        let action = rng.below(4);
        let peer = &mut peers[i];
        match action {
            0 if budget > 0 => {
                budget -= 1;
                issue(peer, i, &mut rng, now);
            }
            1 | 0 => {
                // Client → server, a random cut.
                let n = rng.below(peer.to_server.len() + 1);
                let chunk: Vec<u8> = peer.to_server.drain(..n).collect();
                server.handle_input(now, peer.conn, &chunk);
                while let Some(out) = server.poll_output() {
                    match out {
                        xsio_xenstored::Output::Transmit { conn, bytes } => {
                            let target = peers.iter_mut().find(|p| p.conn == conn).unwrap();
                            target.to_client.extend(&bytes[..]);
                        }
                        other => panic!("server closed a connection: {other:?}"),
                    }
                }
            }
            _ => {
                // Server → client, a random cut.
                let n = rng
                    .below(peer.to_client.len() + 1)
                    .max(1)
                    .min(peer.to_client.len());
                let chunk: Vec<u8> = peer.to_client.drain(..n).collect();
                peer.client
                    .handle_input(now, Input::<OwnedFd>::Bytes(&chunk));
            }
        }
        drain(&mut peers[i]);
    }
    server.check_invariants().unwrap();
    for (i, peer) in peers.iter().enumerate() {
        for op in &peer.issued {
            let results = peer
                .done
                .get(op)
                .unwrap_or_else(|| panic!("client {i}: {op} never completed"));
            assert_eq!(
                results.len(),
                1,
                "client {i}: {op} completed {} times",
                results.len()
            );
            match &results[0] {
                Ok(_) | Err(Error::Xs(ErrorKind::Enoent)) => {}
                Err(err) => panic!("client {i}: {op} failed: {err}"),
            }
        }
        assert_eq!(peer.done.len(), peer.issued.len());
        // The initial fire, then an event for every write below /shared, all routed to
        // this client's watch.
        assert!(
            peer.events
                .iter()
                .all(|e| Some(e.watch) == peer.watch && e.token == "w")
        );
        assert_eq!(
            peer.events.first().map(|e| e.path.as_str()),
            Some("/shared")
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn clients_and_server_agree(seed: u64, n_clients in 1usize..4, steps in 1usize..60) {
        run(seed, n_clients, steps);
    }
}
