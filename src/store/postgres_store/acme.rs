//! ACME accounts, orders and authorizations in PostgreSQL.

use super::*;

const ACCOUNT_EXISTS: &str = "SELECT 1 FROM accounts WHERE id = $1";
const AUTHZ_EXISTS: &str = "SELECT 1 FROM authorizations WHERE id = $1";
const ORDER_EXISTS: &str = "SELECT 1 FROM orders WHERE id = $1";
const CERT_EXISTS: &str = "SELECT 1 FROM certificates WHERE serial = $1";

pub(super) fn processing(authz: &Authorization) -> bool {
    authz.challenges.iter().any(|c| c.status == ChallengeStatus::Processing)
}

/// `orders.open_until`: the expiry of an order not finalized yet.
pub(super) fn open_until(order: &Order) -> Option<i64> {
    (order.phase == crate::model::OrderPhase::Open).then_some(order.expires)
}

/// An order and the authorizations it created, in one statement.
async fn insert_order(c: &impl GenericClient, order: &Order, authzs: &[Authorization]) -> Result<(), StoreError> {
    let sql = "WITH new_authorizations AS (INSERT INTO authorizations \
               (id, account_id, identifier_type, identifier_value, processing, version, body) \
               SELECT id, account_id, t, v, p, 1, b \
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::jsonb[]) \
               AS n(id, account_id, t, v, p, b)) \
               INSERT INTO orders (id, account_id, created, version, body, open_until) \
               VALUES ($7, $8, $9, 1, $10, $11)";
    let ids: Vec<&str> = authzs.iter().map(|a| a.id.0.as_str()).collect();
    let accounts: Vec<&str> = authzs.iter().map(|a| a.account.0.as_str()).collect();
    let kinds: Vec<&str> = authzs.iter().map(|a| a.identifier.kind.as_str()).collect();
    let values: Vec<&str> = authzs.iter().map(|a| a.identifier.value.as_str()).collect();
    let processing: Vec<bool> = authzs.iter().map(processing).collect();
    let bodies: Vec<Json<&Authorization>> = authzs.iter().map(json).collect();
    let params: [&(dyn ToSql + Sync); 11] = [
        &ids,
        &accounts,
        &kinds,
        &values,
        &processing,
        &bodies,
        &order.id.0,
        &order.account.0,
        &order.created,
        &json(order),
        &open_until(order),
    ];
    exec(c, sql, &params).await?;
    Ok(())
}

#[async_trait]
impl AcmeStore for PgStore {
    /// One statement decides (RFC 8555 §7.3.1): the insert, refused by the unique key
    /// thumbprint (or external account binding kid) when taken.
    async fn create_account(&self, account: &Account) -> Result<AccountCreation, StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "INSERT INTO accounts (id, jkt, eab_kid, version, body) VALUES ($1, $2, $3, 1, $4) \
                   ON CONFLICT DO NOTHING";
        let params: [&(dyn ToSql + Sync); 4] = [&account.id.0, &account.jkt.0, &account.eab_kid, &json(account)];
        if exec(&client, sql, &params).await? == 1 {
            return Ok(AccountCreation::Created);
        }
        let existing = "SELECT version, body FROM accounts WHERE jkt = $1";
        match query_opt(&client, existing, &[&account.jkt.0]).await? {
            Some(row) => Ok(AccountCreation::Existing(versioned(&row, "accounts")?)),
            None => Err(StoreError::AlreadyExists),
        }
    }

    async fn account(&self, id: &AccountId) -> Result<Versioned<Account>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT version, body FROM accounts WHERE id = $1", &[&id.0]).await?;
        versioned(&row.ok_or(StoreError::NotFound)?, "accounts")
    }

    async fn account_by_key(&self, jkt: &Jkt) -> Result<Versioned<Account>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT version, body FROM accounts WHERE jkt = $1", &[&jkt.0]).await?;
        versioned(&row.ok_or(StoreError::NotFound)?, "accounts")
    }

    async fn update_account(&self, account: &Account, seen: Version) -> Result<Version, StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE accounts SET jkt = $2, eab_kid = $3, version = version + 1, body = $4 \
                   WHERE id = $1 AND version = $5";
        let params: [&(dyn ToSql + Sync); 5] =
            [&account.id.0, &account.jkt.0, &account.eab_kid, &json(account), &db_version(seen)];
        match exec(&client, sql, &params).await? {
            1 => Ok(seen.next()),
            _ => Err(lost(&client, ACCOUNT_EXISTS, &account.id.0).await),
        }
    }

    /// One statement (the authorizations and the order, all or nothing); with
    /// `replaces`, one transaction whose first statement (the certificate's
    /// compare-and-swap) decides.
    async fn create_order(
        &self,
        order: &Order,
        new_authzs: &[Authorization],
        replaces: Option<(&IssuedCertificate, Version)>,
    ) -> Result<(), StoreError> {
        self.quota.admit()?;
        let Some((cert, seen)) = replaces else {
            let client = self.client().await?;
            return insert_order(&client, order, new_authzs).await;
        };
        transaction!(self, |tx| {
            let sql = "UPDATE certificates SET revoked = $2, version = version + 1, body = $3 \
                       WHERE serial = $1 AND version = $4";
            let params: [&(dyn ToSql + Sync); 4] =
                [&cert.serial.0, &cert.revoked.is_some(), &json(cert), &db_version(seen)];
            if exec(&tx, sql, &params).await? != 1 {
                return Err(lost(&tx, CERT_EXISTS, &cert.serial.0).await);
            }
            insert_order(&tx, order, new_authzs).await
        })
    }

    async fn order(&self, id: &OrderId) -> Result<Versioned<Order>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT version, body FROM orders WHERE id = $1", &[&id.0]).await?;
        versioned(&row.ok_or(StoreError::NotFound)?, "orders")
    }

    async fn account_orders(
        &self,
        account: &AccountId,
        from: Option<(UnixTime, &OrderId)>,
        per_page: usize,
    ) -> Result<(Vec<OrderId>, Option<OrderId>), StoreError> {
        let client = self.client().await?;
        // From a position in `orders_by_account`, never an OFFSET: each page one index
        // range, however deep.
        let sql = "SELECT id FROM orders WHERE account_id = $1 AND (created, id) >= ($2, $3) \
                   ORDER BY created, id LIMIT $4";
        let limit = i64::try_from(per_page.saturating_add(1)).unwrap_or(i64::MAX);
        let (created, id) = from.map_or((i64::MIN, ""), |(c, id)| (c, id.0.as_str()));
        let rows = query(&client, sql, &[&account.0, &created, &id, &limit]).await?;
        let mut ids = rows.iter().map(|r| text(r, 0, "orders").map(OrderId)).collect::<Result<Vec<_>, _>>()?;
        let next = (ids.len() > per_page).then(|| ids.pop()).flatten();
        Ok((ids, next))
    }

    async fn authorization(&self, id: &AuthzId) -> Result<Versioned<Authorization>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(&client, "SELECT version, body FROM authorizations WHERE id = $1", &[&id.0]).await?;
        versioned(&row.ok_or(StoreError::NotFound)?, "authorizations")
    }

    async fn account_authorizations(
        &self,
        account: &AccountId,
        identifier: &Identifier,
    ) -> Result<Vec<AuthzId>, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT id FROM authorizations WHERE account_id = $1 AND identifier_type = $2 \
                   AND identifier_value = $3 ORDER BY id";
        let rows = query(&client, sql, &[&account.0, &identifier.kind.as_str(), &identifier.value]).await?;
        rows.iter().map(|r| text(r, 0, "authorizations").map(AuthzId)).collect()
    }

    /// The `processing` column moves in the same compare-and-swap as the record, so it
    /// is never stale.
    async fn update_authorization(&self, authz: &Authorization, seen: Version) -> Result<Version, StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE authorizations SET processing = $2, version = version + 1, body = $3, \
                   lease_owner = CASE WHEN $2 THEN lease_owner END, lease_until = CASE WHEN $2 THEN lease_until ELSE 0 END \
                   WHERE id = $1 AND version = $4";
        let params: [&(dyn ToSql + Sync); 4] = [&authz.id.0, &processing(authz), &json(authz), &db_version(seen)];
        match exec(&client, sql, &params).await? {
            1 => Ok(seen.next()),
            _ => Err(lost(&client, AUTHZ_EXISTS, &authz.id.0).await),
        }
    }

    async fn authorizations_processing(&self) -> Result<Vec<AuthzId>, StoreError> {
        let client = self.client().await?;
        let rows = query(&client, "SELECT id FROM authorizations WHERE processing ORDER BY id", &[]).await?;
        rows.iter().map(|r| text(r, 0, "authorizations").map(AuthzId)).collect()
    }

    /// One statement: the order's compare-and-swap decides, and the certificate is
    /// inserted only from its row (one row affected: finalized; none: lost the race).
    async fn finalize_order(&self, order: &Order, seen: Version, cert: &IssuedCertificate) -> Result<(), StoreError> {
        self.quota.admit()?;
        let client = self.client().await?;
        let sql = "WITH finalized AS (UPDATE orders SET version = version + 1, body = $2, open_until = NULL \
                   WHERE id = $1 AND version = $3 RETURNING 1) \
                   INSERT INTO certificates (serial, revoked, version, body) SELECT $4, $5, 1, $6 FROM finalized";
        let params: [&(dyn ToSql + Sync); 6] =
            [&order.id.0, &json(order), &db_version(seen), &cert.serial.0, &cert.revoked.is_some(), &json(cert)];
        match exec(&client, sql, &params).await? {
            1 => Ok(()),
            _ => Err(lost(&client, ORDER_EXISTS, &order.id.0).await),
        }
    }

    /// One statement: the row's lease decides.
    async fn claim_validation(
        &self,
        id: &AuthzId,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE authorizations SET lease_owner = $2, lease_until = $4 \
                   WHERE id = $1 AND processing AND (lease_until < $3 OR lease_owner = $2)";
        Ok(exec(&client, sql, &[&id.0, &owner, &now, &until]).await? == 1)
    }

    /// One statement: rows another instance is claiming are skipped (`SKIP LOCKED`), and
    /// a row claimed meanwhile fails the re-checked condition.
    async fn claim_expired_validations(
        &self,
        owner: &str,
        now: UnixTime,
        until: UnixTime,
        max: usize,
    ) -> Result<Vec<AuthzId>, StoreError> {
        let client = self.client().await?;
        let sql = "UPDATE authorizations SET lease_owner = $1, lease_until = $3 WHERE id IN \
                   (SELECT id FROM authorizations WHERE processing AND lease_until < $2 \
                   ORDER BY lease_until LIMIT $4 FOR UPDATE SKIP LOCKED) \
                   AND processing AND lease_until < $2 RETURNING id";
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = query(&client, sql, &[&owner, &now, &until, &max]).await?;
        rows.iter().map(|r| text(r, 0, "authorizations").map(AuthzId)).collect()
    }

    async fn open_orders(&self, account: &AccountId, now: UnixTime, max: usize) -> Result<Vec<OrderId>, StoreError> {
        let client = self.client().await?;
        let sql = "SELECT id FROM orders WHERE account_id = $1 AND open_until > $2 LIMIT $3";
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = query(&client, sql, &[&account.0, &now, &max]).await?;
        rows.iter().map(|r| text(r, 0, "orders").map(OrderId)).collect()
    }
}
