//! Fuzzes the TLS ClientHello sniffer: the whole input at once, then the same input fed in the
//! splits given by its first byte; both must agree and neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lnm_proxy::sniff::{Sniff, TlsSniffer};

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else { return };
    let whole = TlsSniffer::new(64 * 1024).feed(input);
    let step = usize::from(step.max(1));
    let mut sniffer = TlsSniffer::new(64 * 1024);
    let mut outcome = Sniff::NeedMore;
    let mut end = 0;
    while end < input.len() {
        end = (end + step).min(input.len());
        outcome = sniffer.feed(&input[..end]);
        if outcome != Sniff::NeedMore {
            break;
        }
    }
    if input.is_empty() {
        return;
    }
    assert_eq!(outcome, whole, "split feeding disagrees with whole feeding");
});
