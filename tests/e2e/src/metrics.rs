//! Reading Prometheus text (the API server's `/metrics` and the webhook's): samples, counters
//! summed over label sets, and cumulative histograms with their difference between two scrapes.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::Node;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (with its `_bucket`, `_sum`, `_count` or `_total` suffix).
    pub name: String,
    /// The labels, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of one label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn matches(&self, name: &str, filter: &[(&str, &str)]) -> bool {
        self.name == name && filter.iter().all(|(k, v)| self.label(k) == Some(v))
    }
}

/// Parses the text exposition format (Prometheus or OpenMetrics); unparsable lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = body.find('=')?;
            let key = body[..eq].trim().to_owned();
            let mut chars = body[eq + 1..].strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let close = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => {
                        let (_, escaped) = chars.next()?;
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((key, value));
            // `="` is two bytes, then the value, then the closing quote.
            body = &body[eq + 2 + close + 1..];
        }
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name,
        labels,
        value: parse_float(value)?,
    })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// The sum of every sample called `name` whose labels include `filter` (0 when there is none:
/// a labelled counter appears only once it has been incremented).
pub fn sum(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.matches(name, filter))
        .map(|s| s.value)
        .sum()
}

/// A cumulative histogram (summed over the label sets that matched).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, cumulative count)`, ascending, `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    /// `_sum`, seconds.
    pub sum: f64,
    /// `_count`.
    pub count: f64,
}

impl Histogram {
    /// The histogram `base` (`base_bucket`, `base_sum`, `base_count`) over the samples whose labels
    /// include `filter`.
    pub fn from_samples(samples: &[Sample], base: &str, filter: &[(&str, &str)]) -> Histogram {
        let bucket = format!("{base}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for s in samples.iter().filter(|s| s.matches(&bucket, filter)) {
            let Some(le) = s.label("le").and_then(parse_float) else {
                continue;
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += s.value,
                None => buckets.push((le, s.value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            sum: sum(samples, &format!("{base}_sum"), filter),
            count: sum(samples, &format!("{base}_count"), filter),
        }
    }

    /// Adds another histogram with the same buckets (e.g. the second replica's).
    pub fn add(&mut self, other: &Histogram) {
        for (le, n) in &other.buckets {
            match self.buckets.iter_mut().find(|(b, _)| b == le) {
                Some((_, m)) => *m += n,
                None => self.buckets.push((*le, *n)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.sum += other.sum;
        self.count += other.count;
    }

    /// What was observed between `earlier` and `self`.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, n)| *n)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| (*le, n - before(*le)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The cumulative count at bound `le`, if the histogram has that bucket.
    pub fn at(&self, le: f64) -> Option<f64> {
        self.buckets.iter().find(|(b, _)| *b == le).map(|(_, n)| *n)
    }

    /// The smallest bucket bound holding at least the fraction `q` of the observations (an upper
    /// bound of that quantile).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        self.buckets
            .iter()
            .find(|(_, n)| *n >= q * self.count)
            .map(|(le, _)| *le)
    }

    /// The mean observation.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0.0).then(|| Duration::from_secs_f64(self.sum / self.count))
    }
}

/// The API server's own `/metrics`.
pub async fn api_server(node: &Node) -> Result<Vec<Sample>> {
    get(node, "/metrics").await
}

/// A Pod's metrics through the API server's Pod proxy (`pods/NAME:PORT/proxy/metrics`).
pub async fn pod(node: &Node, namespace: &str, pod: &str, port: u16) -> Result<Vec<Sample>> {
    get(
        node,
        &format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics"),
    )
    .await
}

async fn get(node: &Node, path: &str) -> Result<Vec<Sample>> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .expect("a GET request");
    let text = node
        .client
        .request_text(req)
        .await
        .with_context(|| format!("GET {path}"))?;
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_histograms_and_differences_are_read() {
        let text = "# HELP x y\n\
            apiserver_admission_webhook_fail_open_count{name=\"a.b\",type=\"admit\"} 3\n\
            h_bucket{name=\"n\",le=\"0.005\"} 1\n\
            h_bucket{name=\"n\",le=\"+Inf\"} 4\n\
            h_sum{name=\"n\"} 0.5\n\
            h_count{name=\"n\"} 4\n\
            h_bucket{name=\"other\",le=\"0.005\"} 100\n\
            odd{msg=\"a,b=\\\"c\\\"\"} 1e-5\n\
            plain 7 1700000000\n\
            # EOF\n";
        let s = parse(text);
        assert_eq!(
            sum(
                &s,
                "apiserver_admission_webhook_fail_open_count",
                &[("name", "a.b")]
            ),
            3.0
        );
        assert_eq!(sum(&s, "missing", &[]), 0.0);
        assert_eq!(sum(&s, "plain", &[]), 7.0);
        let odd = s.iter().find(|s| s.name == "odd").expect("parsed");
        assert_eq!(odd.label("msg"), Some("a,b=\"c\""));
        assert_eq!(odd.value, 1e-5);
        let h = Histogram::from_samples(&s, "h", &[("name", "n")]);
        assert_eq!(h.buckets, vec![(0.005, 1.0), (f64::INFINITY, 4.0)]);
        assert_eq!((h.sum, h.count), (0.5, 4.0));
        assert_eq!(h.quantile_bound(0.25), Some(0.005));
        assert_eq!(h.quantile_bound(0.5), Some(f64::INFINITY));
        let earlier = Histogram {
            buckets: vec![(0.005, 1.0), (f64::INFINITY, 1.0)],
            sum: 0.1,
            count: 1.0,
        };
        let d = h.since(&earlier);
        assert_eq!(d.buckets, vec![(0.005, 0.0), (f64::INFINITY, 3.0)]);
        assert_eq!(d.count, 3.0);
    }
}
