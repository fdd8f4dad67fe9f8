//! ACME accounts, orders and authorizations in PostgreSQL.

use super::*;

const ACCOUNT_EXISTS: &str = "SELECT 1 FROM accounts WHERE id = $1";
const AUTHZ_EXISTS: &str = "SELECT 1 FROM authorizations WHERE id = $1";
const ORDER_EXISTS: &str = "SELECT 1 FROM orders WHERE id = $1";
const CERT_EXISTS: &str = "SELECT 1 FROM certificates WHERE serial = $1";

pub(super) fn processing(authz: &Authorization) -> bool {
    authz.challenges.iter().any(|c| c.status == ChallengeStatus::Processing)
}

async fn insert_authorization(c: &impl GenericClient, a: &Authorization) -> Result<(), StoreError> {
    let sql = "INSERT INTO authorizations (id, account_id, identifier_type, identifier_value, processing, version, \
               body) VALUES ($1, $2, $3, $4, $5, 1, $6)";
    let kind = a.identifier.kind.as_str();
    exec(c, sql, &[&a.id.0, &a.account.0, &kind, &a.identifier.value, &processing(a), &json(a)]).await?;
    Ok(())
}

#[async_trait]
impl AcmeStore for PgStore {
    /// One statement decides (RFC 8555 §7.3.1): the insert, refused by the unique key
    /// thumbprint (or external account binding kid) when taken.
    async fn create_account(&self, account: &Account) -> Result<AccountCreation, StoreError> {
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

    /// One transaction; with `replaces`, its first statement (the certificate's
    /// compare-and-swap) decides.
    async fn create_order(
        &self,
        order: &Order,
        new_authzs: &[Authorization],
        replaces: Option<(&IssuedCertificate, Version)>,
    ) -> Result<(), StoreError> {
        transaction!(self, |tx| {
            if let Some((cert, seen)) = replaces {
                let sql = "UPDATE certificates SET revoked = $2, version = version + 1, body = $3 \
                           WHERE serial = $1 AND version = $4";
                let params: [&(dyn ToSql + Sync); 4] =
                    [&cert.serial.0, &cert.revoked.is_some(), &json(cert), &db_version(seen)];
                if exec(&tx, sql, &params).await? != 1 {
                    return Err(lost(&tx, CERT_EXISTS, &cert.serial.0).await);
                }
            }
            for a in new_authzs {
                insert_authorization(&tx, a).await?;
            }
            let sql = "INSERT INTO orders (id, account_id, created, version, body) VALUES ($1, $2, $3, 1, $4)";
            exec(&tx, sql, &[&order.id.0, &order.account.0, &order.created, &json(order)]).await?;
            Ok(())
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
        page: usize,
        per_page: usize,
    ) -> Result<(Vec<OrderId>, bool), StoreError> {
        let client = self.client().await?;
        let sql = "SELECT id FROM orders WHERE account_id = $1 ORDER BY created, id LIMIT $2 OFFSET $3";
        let limit = i64::try_from(per_page.saturating_add(1)).unwrap_or(i64::MAX);
        let offset = i64::try_from(page.saturating_mul(per_page)).unwrap_or(i64::MAX);
        let rows = query(&client, sql, &[&account.0, &limit, &offset]).await?;
        let mut ids = rows.iter().map(|r| text(r, 0, "orders").map(OrderId)).collect::<Result<Vec<_>, _>>()?;
        let more = ids.len() > per_page;
        ids.truncate(per_page);
        Ok((ids, more))
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
        let sql = "UPDATE authorizations SET processing = $2, version = version + 1, body = $3 \
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

    /// One transaction whose first statement, the order's compare-and-swap, decides.
    async fn finalize_order(&self, order: &Order, seen: Version, cert: &IssuedCertificate) -> Result<(), StoreError> {
        transaction!(self, |tx| {
            let sql = "UPDATE orders SET version = version + 1, body = $2 WHERE id = $1 AND version = $3";
            if exec(&tx, sql, &[&order.id.0, &json(order), &db_version(seen)]).await? != 1 {
                return Err(lost(&tx, ORDER_EXISTS, &order.id.0).await);
            }
            let sql = "INSERT INTO certificates (serial, revoked, version, body) VALUES ($1, $2, 1, $3)";
            exec(&tx, sql, &[&cert.serial.0, &cert.revoked.is_some(), &json(cert)]).await?;
            Ok(())
        })
    }
}
