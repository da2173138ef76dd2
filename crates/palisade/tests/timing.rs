//! Sign-in takes the same time for an address with an account and one without (IDN-2), so
//! timing does not reveal which addresses have accounts. In its own test binary: cargo runs test
//! binaries one at a time, so no other test's Argon2 work competes for the 2 cores while this
//! one measures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

#[tokio::test]
async fn unknown_and_known_addresses_take_the_same_time() {
    for s in common::servers().await {
        let b = s.backend();
        let email = "timed@example.com";
        s.user(email).await;
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        // Interleaved, so both see the same machine load.
        for i in 0..50 {
            let mut pair = [(email, &mut known), ("absent@example.com", &mut unknown)];
            if i % 2 == 1 {
                pair.reverse();
            }
            for (address, into) in pair {
                let started = std::time::Instant::now();
                let r = s.sign_in(address, &format!("wrong password {i}")).await;
                into.push(started.elapsed());
                r.assert_problem(401, "invalid_credentials", b);
            }
        }
        // Each known try is paired with the unknown one beside it (either order), so the two
        // saw the same load; the median of the pairs' differences is the gap an attacker could
        // measure.
        let mut gaps: Vec<f64> = known
            .iter()
            .zip(&unknown)
            .map(|(k, u)| k.as_secs_f64() - u.as_secs_f64())
            .collect();
        gaps.sort_by(f64::total_cmp);
        let gap_ms = gaps[gaps.len() / 2] * 1000.0;
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let (k, u) = (median(&mut known), median(&mut unknown));
        eprintln!(
            "{b}: median sign-in, known address {k:?}, unknown {u:?}, median gap {gap_ms:.3} ms"
        );
        assert!(
            gap_ms.abs() < 5.0,
            "{b}: median gap {gap_ms:.3} ms (known {k:?}, unknown {u:?})"
        );
        s.stop().await;
    }
}
