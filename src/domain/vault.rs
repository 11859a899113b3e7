//! The vault (SPEC §1.2, §4): data products, their warehouses, and the
//! warehouse credentials principals store for them.

use serde::{Deserialize, Serialize};

/// Where a data product's data lives. Never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Warehouse {
    Postgresql { host: String, port: u16, database: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataProduct {
    pub dp_id: String,
    pub name: String,
    pub warehouse: Warehouse,
}

const ID_MAX: usize = 200;
const FIELD_MAX: usize = 1024;

pub fn validate_data_product(dp: &DataProduct) -> Result<(), String> {
    if dp.dp_id.is_empty()
        || dp.dp_id.len() > ID_MAX
        || !dp.dp_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(format!("dp_id must be 1 to {ID_MAX} characters of letters, digits, '-', '_', '.', ':'"));
    }
    if dp.name.trim().is_empty() || dp.name.chars().count() > 200 {
        return Err("name must be 1 to 200 characters".into());
    }
    match &dp.warehouse {
        Warehouse::Postgresql { host, port, database } => {
            if host.is_empty() || host.len() > 255 || host.contains(['/', '@', ' ', '?', '#']) {
                return Err("warehouse.host must be a host name or address".into());
            }
            if *port == 0 {
                return Err("warehouse.port must be from 1 to 65535".into());
            }
            if database.is_empty() || database.len() > 63 {
                return Err("warehouse.database must be 1 to 63 characters".into());
            }
        }
    }
    Ok(())
}

/// Checks the fields of stored credentials (not whether they work).
pub fn validate_credentials(state: &str, username: &str, password: &str) -> Result<(), String> {
    for (field, value) in [("state", state), ("username", username), ("password", password)] {
        if value.is_empty() || value.len() > FIELD_MAX {
            return Err(format!("{field} must be 1 to {FIELD_MAX} characters"));
        }
    }
    if username.chars().any(char::is_control) {
        return Err("username must not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_products_and_credentials() {
        let dp = DataProduct {
            dp_id: "sales-2026".into(),
            name: "Sales".into(),
            warehouse: Warehouse::Postgresql {
                host: "db.internal".into(),
                port: 5432,
                database: "sales".into(),
            },
        };
        assert_eq!(validate_data_product(&dp), Ok(()));
        assert!(
            validate_data_product(&DataProduct { dp_id: "a b".into(), ..dp.clone() })
                .unwrap_err()
                .contains("dp_id")
        );
        let bad_host = DataProduct {
            warehouse: Warehouse::Postgresql { host: "u:p@h".into(), port: 5432, database: "d".into() },
            ..dp
        };
        assert!(validate_data_product(&bad_host).unwrap_err().contains("host"));
        assert!(validate_credentials("s", "u", "").unwrap_err().contains("password"));
        assert!(validate_credentials("s", "u", "p").is_ok());
    }
}
