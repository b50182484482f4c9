//! The order in which a delivery group's members are tried for one attempt: by
//! priority for `failover`; for `weighted`, a weighted random order (the first member is
//! picked in proportion to its weight, the rest follow as fallbacks the same way).

use crate::store::providers::MemberRow;
use rand::Rng;

pub fn order(strategy: &str, members: &[MemberRow]) -> Vec<MemberRow> {
    let mut rest: Vec<MemberRow> = members.to_vec();
    if strategy != "weighted" {
        rest.sort_by_key(|m| (m.priority, m.position));
        return rest;
    }
    let mut rng = rand::rng();
    let mut out = Vec::with_capacity(rest.len());
    while !rest.is_empty() {
        let total: i64 = rest.iter().map(|m| m.weight.max(1)).sum();
        let mut pick = rng.random_range(0..total);
        let mut idx = 0;
        for (i, m) in rest.iter().enumerate() {
            if pick < m.weight.max(1) {
                idx = i;
                break;
            }
            pick -= m.weight.max(1);
        }
        out.push(rest.remove(idx));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pos: i64, prio: i64, weight: i64) -> MemberRow {
        MemberRow { group_id: "g".into(), position: pos, provider_id: Some(format!("p{pos}")), priority: prio, weight }
    }

    #[test]
    fn failover_goes_by_priority() {
        let got = order("failover", &[m(0, 5, 1), m(1, 1, 1), m(2, 3, 1)]);
        assert_eq!(got.iter().map(|x| x.position).collect::<Vec<_>>(), vec![1, 2, 0]);
    }

    #[test]
    fn weighted_spreads_in_proportion_and_keeps_fallbacks() {
        let members = [m(0, 0, 3), m(1, 0, 1)];
        let mut first = [0usize; 2];
        for _ in 0..4000 {
            let o = order("weighted", &members);
            assert_eq!(o.len(), 2);
            first[o[0].position as usize] += 1;
        }
        let share = first[0] as f64 / 4000.0;
        assert!((0.70..0.80).contains(&share), "share of the weight-3 member: {share}");
    }
}
