//! An operator's Prometheus scrapes a real server's `/metrics` (its own
//! loopback listener, plain HTTP) before and after alice writes to bob:
//! the text is well-formed exposition, and the counters moved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Server, free_port, scrape_metrics};
use std::collections::BTreeMap;

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses the OpenMetrics text strictly: every line is a HELP, TYPE or
/// UNIT of a metric, a sample of a metric whose TYPE came before it, or
/// the final `# EOF`. Returns each series (`name{labels}`) and its value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut series = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no EOF at the end:\n{text}");
    for line in &lines[..lines.len() - 1] {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let (kind, name, rest) = (kind.unwrap(), name.unwrap(), rest.unwrap());
            assert!(is_name(name), "{line}");
            match kind {
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram"].contains(&rest), "{line}");
                    typed.insert(name.to_owned(), rest.to_owned());
                }
                "HELP" | "UNIT" => assert!(!rest.is_empty(), "{line}"),
                _ => panic!("unknown metadata line: {line}"),
            }
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"))
        };
        let name = match key.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap();
                for pair in labels.split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(is_name(k), "{line}");
                    assert!(
                        v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                        "{line}"
                    );
                }
                name
            }
            None => key,
        };
        assert!(is_name(name), "{line}");
        let family = ["_total", "_bucket", "_count", "_sum", ""]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                typed.contains_key(base).then_some(base)
            })
            .unwrap_or_else(|| panic!("a sample before its TYPE: {line}"));
        assert!(!family.is_empty());
        assert!(
            series.insert(key.to_owned(), value).is_none(),
            "twice: {line}"
        );
    }
    series
}

fn value(series: &BTreeMap<String, f64>, key: &str) -> f64 {
    *series
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {series:#?}"))
}

#[test]
fn counters_move_when_letters_are_sent_and_read() {
    let port = free_port();
    let server = Server::start_with(&["--metrics-listen", &format!("127.0.0.1:{port}")]);
    let (status, content_type, body) = scrape_metrics(port);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let before = parse(&body);
    let accepted = "valise_letters_total{outcome=\"accepted\"}";
    assert_eq!(value(&before, accepted), 0.0);
    assert_eq!(value(&before, "valise_deliveries_total"), 0.0);
    assert_eq!(value(&before, "valise_writer_queue_bytes"), 0.0);
    assert_eq!(value(&before, "valise_writer_queue_requests"), 0.0);
    let epoch_before = value(&before, "valise_directory_epoch");

    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.send_to(&["bob"], "One", "First.");
    alice.send_to(&["bob"], "Two", "Second.");
    assert_eq!(bob.sync()["new_letters"], 2);

    let after = parse(&scrape_metrics(port).2);
    // Two letters at least (a client may send control messages too).
    assert!(value(&after, accepted) >= 2.0, "{after:#?}");
    // Two welcomes and two letters at least (bob reads his own key
    // directory entries too).
    assert!(
        value(&after, "valise_deliveries_total") >= 3.0,
        "{after:#?}"
    );
    // Two enrolments, each published in an epoch of its own or together.
    assert!(value(&after, "valise_directory_epoch") > epoch_before);
    // Every write was answered: the queue is empty again.
    assert_eq!(value(&after, "valise_writer_queue_requests"), 0.0);
    // The send route's latency, under its pattern, with its buckets.
    let sends = "valise_request_duration_seconds_count{route=\"/v1/letters\",method=\"POST\",status=\"200\"}";
    assert!(value(&after, sends) >= 2.0, "{after:#?}");
    let inf = "valise_request_duration_seconds_bucket{le=\"+Inf\",route=\"/v1/letters\",method=\"POST\",status=\"200\"}";
    assert_eq!(value(&after, inf), value(&after, sends));
    // Paths carrying names are counted under their pattern, never by name.
    assert!(
        after.keys().all(|k| !k.contains("bob@")),
        "a user name in a label: {after:#?}"
    );

    // A connection is counted while it is open (even before its TLS
    // handshake), and no longer once it is gone.
    let open = |at_least: bool| {
        for _ in 0..100 {
            let n = value(&parse(&scrape_metrics(port).2), "valise_connections_open");
            if (n >= 1.0) == at_least {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "connections_open never became {}",
            if at_least { ">= 1" } else { "0" }
        );
    };
    let tcp = std::net::TcpStream::connect(server.listen_addr()).unwrap();
    open(true);
    drop(tcp);
    open(false);
}
