//! `touchline rates …`: the exchange rates revenue and cost are converted by into each
//! account's reporting currency (docs/attribution.md, "Currencies"), and the reporting currency
//! of an account.

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use touchline_model::Currency;
use touchline_sql::CurrencyRate;

/// `touchline rates …`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum RatesCommand {
    /// Add a rate: one FROM is worth RATE of TO from `--from` on (a row of the same pair and
    /// start is replaced). Records that waited for it are credited at the aggregator's next
    /// flush.
    Put {
        /// ISO 4217 code, e.g. EUR.
        from_currency: String,
        /// ISO 4217 code, e.g. USD.
        to_currency: String,
        /// How many TO one FROM is worth, e.g. 1.0825.
        rate: Decimal,
        /// First day (YYYY-MM-DD, from 00:00 UTC) or instant (RFC 3339) it holds.
        #[arg(long)]
        from: String,
        /// Day or instant it no longer holds (exclusive); by default until the pair's next rate.
        #[arg(long)]
        until: Option<String>,
        /// Who supplied it.
        #[arg(long, default_value = "manual")]
        source: String,
    },
    /// Print the stored rates as JSON.
    Show,
    /// Set the reporting currency of an account (id or name): records from then on are
    /// converted to it.
    Currency {
        account: String,
        /// ISO 4217 code, e.g. EUR.
        currency: String,
    },
}

/// A day (00:00 UTC) or an RFC 3339 instant.
fn instant(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = s.parse::<NaiveDate>() {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).with_context(|| format!("{s:?} is neither YYYY-MM-DD nor RFC 3339"))
}

fn code(s: &str) -> anyhow::Result<String> {
    Ok(Currency::new(s).map_err(anyhow::Error::msg)?.to_string())
}

/// The rate `put` stores.
fn rate_of(command: &RatesCommand) -> anyhow::Result<Option<CurrencyRate>> {
    let RatesCommand::Put { from_currency, to_currency, rate, from, until, source } = command else { return Ok(None) };
    Ok(Some(CurrencyRate {
        from_currency: code(from_currency)?,
        to_currency: code(to_currency)?,
        rate: *rate,
        valid_from: instant(from)?,
        valid_until: until.as_deref().map(instant).transpose()?,
        source: source.clone(),
    }))
}

/// Runs a `touchline rates` command against the configured store.
pub async fn cli(config: crate::config::Config, command: RatesCommand) -> anyhow::Result<()> {
    let store = crate::app::open_store(&config).await?;
    match &command {
        RatesCommand::Show => {
            let rates = store.load_catalog().await.context("reading the catalog")?.currency_rates;
            println!("{}", serde_json::to_string_pretty(&rates)?);
        }
        RatesCommand::Put { .. } => {
            let rate = rate_of(&command)?.context("a rate")?;
            store.put_currency_rate(&rate).await.context("storing the rate")?;
            println!("{}", serde_json::to_string_pretty(&rate)?);
        }
        RatesCommand::Currency { account, currency } => {
            let currency = code(currency)?;
            let accounts = store.load_catalog().await.context("reading the catalog")?.accounts;
            let Some(found) = accounts.into_iter().find(|a| a.name == *account || a.id.to_string() == *account) else {
                anyhow::bail!("no account {account:?} in {}", crate::app::redact(&config.database_url()));
            };
            let updated = touchline_sql::Account { currency, ..found };
            store.upsert_account(&updated).await.context("updating the account")?;
            println!("{}", serde_json::json!({"account": updated.id, "name": updated.name, "currency": updated.currency}));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn put(to: &str, from: &str) -> RatesCommand {
        RatesCommand::Put {
            from_currency: "eur".into(),
            to_currency: to.into(),
            rate: "1.0825".parse().unwrap(),
            from: from.into(),
            until: Some("2026-11-21T06:00:00+02:00".into()),
            source: "manual".into(),
        }
    }

    #[test]
    fn a_day_is_its_midnight_utc_and_codes_are_upper_cased() {
        let r = rate_of(&put("USD", "2026-11-20")).unwrap().unwrap();
        assert_eq!(r.from_currency, "EUR");
        assert_eq!(r.valid_from, "2026-11-20T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(r.valid_until, Some("2026-11-21T04:00:00Z".parse::<DateTime<Utc>>().unwrap()));
        assert!(rate_of(&put("USD", "yesterday")).is_err());
        assert!(rate_of(&put("US", "2026-11-20")).is_err());
        assert!(rate_of(&RatesCommand::Show).unwrap().is_none());
    }
}
