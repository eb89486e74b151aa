//! The administration subcommands: `migrate`, `tenant create|list`, `token issue|revoke`. Each
//! runs against a store that is already connected and migrated, and prints what it did.
use darkroom_shared::store::{Store, StoreError};

use crate::cli::{Command, TenantCommand, TokenCommand};

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
            let width = tenants.iter().map(|t| t.name.chars().count()).max().unwrap_or(4).max(4);
            println!("{:width$}  {:36}  {:20}  ACTIVE TOKENS", "NAME", "ID", "CREATED");
            for t in tenants {
                println!("{:width$}  {:36}  {:20}  {}", t.name, t.id, t.created_at.format("%Y-%m-%d %H:%M:%S"), t.active_tokens);
            }
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
