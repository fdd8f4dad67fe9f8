//! Order and authorization status (RFC 8555 §7.1.6), derived from what is stored.

use super::wire::OrderStatus;
use crate::clock::UnixTime;
use crate::model::{Authorization, AuthzStatus, Order, OrderPhase};

/// An authorization's status at `now`: pending and valid authorizations expire (§7.1.6).
pub fn authz_status(a: &Authorization, now: UnixTime) -> AuthzStatus {
    match a.status {
        AuthzStatus::Pending | AuthzStatus::Valid if now >= a.expires => AuthzStatus::Expired,
        s => s,
    }
}

/// An order's status at `now`, from its finalization phase and its authorizations:
/// `invalid` if it expired unfinalized or any authorization failed, `ready` when all are
/// valid, `pending` otherwise (§7.1.6).
pub fn order_status(order: &Order, authzs: &[Authorization], now: UnixTime) -> OrderStatus {
    match &order.phase {
        OrderPhase::Valid { .. } => OrderStatus::Valid,
        OrderPhase::Invalid { .. } => OrderStatus::Invalid,
        OrderPhase::Open => {
            if now >= order.expires {
                return OrderStatus::Invalid;
            }
            let statuses: Vec<AuthzStatus> = authzs.iter().map(|a| authz_status(a, now)).collect();
            if statuses.len() != order.authorizations.len() {
                return OrderStatus::Invalid;
            }
            if statuses.iter().any(|s| !matches!(s, AuthzStatus::Pending | AuthzStatus::Valid)) {
                OrderStatus::Invalid
            } else if statuses.iter().all(|s| *s == AuthzStatus::Valid) {
                OrderStatus::Ready
            } else {
                OrderStatus::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn authz(status: AuthzStatus, expires: UnixTime) -> Authorization {
        Authorization {
            id: AuthzId::random(),
            account: AccountId("a".into()),
            identifier: Identifier { kind: IdentifierKind::Dns, value: "a.example".into() },
            status,
            expires,
            wildcard: false,
            challenges: vec![],
        }
    }

    fn order(n: usize, phase: OrderPhase) -> Order {
        Order {
            id: OrderId::random(),
            account: AccountId("a".into()),
            identifiers: vec![],
            authorizations: (0..n).map(|_| AuthzId::random()).collect(),
            expires: 1000,
            not_before: None,
            not_after: None,
            phase,
            created: 0,
            replaces: None,
            replaces_cert_id: None,
            profile: None,
        }
    }

    #[test]
    fn derives_each_state() {
        let o = order(2, OrderPhase::Open);
        let p = authz(AuthzStatus::Pending, 1000);
        let v = authz(AuthzStatus::Valid, 1000);
        let i = authz(AuthzStatus::Invalid, 1000);
        assert_eq!(order_status(&o, &[p.clone(), v.clone()], 10), OrderStatus::Pending);
        assert_eq!(order_status(&o, &[v.clone(), v.clone()], 10), OrderStatus::Ready);
        assert_eq!(order_status(&o, &[v.clone(), i], 10), OrderStatus::Invalid);
        assert_eq!(order_status(&o, &[v.clone(), v.clone()], 1000), OrderStatus::Invalid, "expired order");
        let expired_authz = authz(AuthzStatus::Valid, 5);
        assert_eq!(order_status(&o, &[v.clone(), expired_authz], 10), OrderStatus::Invalid);
        assert_eq!(order_status(&o, &[v], 10), OrderStatus::Invalid, "missing authorization");
        let done = order(1, OrderPhase::Valid { certificate: Serial("01".into()) });
        assert_eq!(order_status(&done, &[], 5000), OrderStatus::Valid);
    }
}
