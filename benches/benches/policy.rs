//! Criterion benchmark of `Allowlist::check` over 10,000 rules.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lnm_benches::{probe_names, synthetic_allowlist};
use lnm_policy::Request;

fn check(c: &mut Criterion) {
    let source: IpAddr = "10.2.0.7".parse().unwrap_or(IpAddr::from([10, 2, 0, 7]));
    let mut group = c.benchmark_group("allowlist");
    for rules in [100, 10_000] {
        let list = synthetic_allowlist(rules);
        let names = probe_names();
        group.throughput(Throughput::Elements(names.len() as u64));
        group.bench_function(format!("check/{rules}_rules/mixed_8"), |b| {
            b.iter(|| {
                let mut allowed = 0u32;
                for name in &names {
                    let request = Request::for_name(black_box(name), source, 443);
                    allowed += u32::from(list.check(&request).is_allowed());
                }
                allowed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
