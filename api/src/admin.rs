//! The administration subcommands: `migrate`, `tenant create|list|set|webhook-secret`, `token issue|revoke`. Each
//! runs against a store that is already connected and migrated, and prints what it did.
use darkroom_shared::store::{LimitsUpdate, Store, StoreError};

use crate::cli::{Command, Limit, TenantCommand, TokenCommand};

/// Run one administration command (`serve` is not one).
pub async fn run(store: &Store, command: &Command) -> Result<(), StoreError> {
    match command {
        Command::Serve(_) => Ok(()),
        Command::Migrate => {
            let latest = darkroom_shared::store::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
            println!("the database schema is up to date (migration {latest})");
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { name }) => {
            let tenant = store.create_tenant(name).await?;
            println!("created tenant {} ({})", tenant.name, tenant.id);
            Ok(())
        }
        Command::Tenant(TenantCommand::List) => {
            let tenants = store.list_tenants().await?;
            if tenants.is_empty() {
                println!("no tenants yet: create one with `darkroom-api tenant create NAME`");
                return Ok(());
            }
            let width = tenants.iter().map(|t| t.tenant.name.chars().count()).max().unwrap_or(4).max(4);
            println!(
                "{:width$}  {:36}  {:19}  {:>8}  {:>5}  {:>10}  {:>11}  {:>6}  ACTIVE TOKENS",
                "NAME", "ID", "CREATED", "RATE/MIN", "BURST", "MAX QUEUED", "MAX RUNNING", "WEIGHT"
            );
            for row in tenants {
                let (t, l) = (&row.tenant, &row.tenant.limits);
                println!(
                    "{:width$}  {:36}  {:19}  {:>8}  {:>5}  {:>10}  {:>11}  {:>6}  {}",
                    t.name,
                    t.id,
                    t.created_at.format("%Y-%m-%d %H:%M:%S"),
                    shown(l.rate_per_minute),
                    shown(l.burst),
                    shown(l.max_queued),
                    shown(l.max_running),
                    shown(l.weight),
                    row.active_tokens
                );
            }
            println!("(* = the serve-wide default: see `darkroom-api serve --help`; 0 = no limit)");
            Ok(())
        }
        Command::Tenant(TenantCommand::Set { name, rate, burst, max_queued, max_running, weight }) => {
            if *burst == Some(Limit::Value(0)) {
                return Err(StoreError::Conflict("--burst must be at least 1".into()));
            }
            if *weight == Some(Limit::Value(0.0)) {
                return Err(StoreError::Conflict("--weight must be above 0".into()));
            }
            let update = LimitsUpdate {
                rate_per_minute: rate.map(Limit::value),
                burst: burst.map(Limit::value),
                max_queued: max_queued.map(Limit::value),
                max_running: max_running.map(Limit::value),
                weight: weight.map(Limit::value),
            };
            let t = store.set_tenant_limits(name, &update).await?;
            let l = t.limits;
            println!(
                "tenant {}: rate {}/min, burst {}, max queued {}, max running {}, weight {} (* = serve-wide default)",
                t.name,
                shown(l.rate_per_minute),
                shown(l.burst),
                shown(l.max_queued),
                shown(l.max_running),
                shown(l.weight)
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::WebhookSecret { name }) => {
            let new = store.rotate_webhook_secret(name).await?;
            match new.previous_until {
                None => println!("created the webhook secret of tenant {name}."),
                Some(until) => println!(
                    "rotated the webhook secret of tenant {name}; deliveries are signed with the previous one too until {} UTC.",
                    until.format("%Y-%m-%d %H:%M:%S")
                ),
            }
            println!("verify deliveries with it (Standard Webhooks); the next line is the secret:");
            println!("{}", new.secret);
            Ok(())
        }
        Command::Token(TokenCommand::Issue { tenant }) => {
            let token = store.issue_token(tenant).await?;
            let prefix = token.get(..darkroom_shared::store::VISIBLE_PREFIX_LEN).unwrap_or(&token);
            println!("issued a token for tenant {tenant} (revoke it with `darkroom-api token revoke {prefix}`).");
            println!("it is shown only now; the next line is the token:");
            println!("{token}");
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { prefix }) => {
            let revoked = store.revoke_token(prefix).await?;
            println!("revoked token {revoked}…");
            Ok(())
        }
    }
}

/// A tenant's own limit, or `*` for the serve-wide default.
fn shown<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "*".into())
}
