use super::{App, AppError};
use crate::domain::audit::AuditEvent;
use crate::domain::settings::{SETTINGS, SettingSpec, SettingValue, spec};
use crate::domain::{Actor, excerpt};
use serde_json::json;

impl App {
    /// The effective value of a known setting, read from the store on every
    /// call so that a change made on any node applies everywhere at once.
    pub async fn setting(&self, key: &str) -> Result<SettingValue, AppError> {
        let spec = known(key)?;
        Ok(SettingValue::resolve(spec, self.store.setting(key).await?))
    }

    pub async fn all_settings(&self) -> Result<Vec<SettingValue>, AppError> {
        let stored = self.store.settings().await?;
        Ok(SETTINGS
            .iter()
            .map(|spec| {
                let value = stored.iter().find(|(k, _)| k == spec.key).map(|(_, v)| v.clone());
                SettingValue::resolve(spec, value)
            })
            .collect())
    }

    pub async fn set_setting(&self, actor: Actor, key: &str, raw: &str) -> Result<SettingValue, AppError> {
        let spec = known(key)?;
        let value = spec.normalize(raw).map_err(|e| AppError::Invalid(e.to_string()))?;
        let event = AuditEvent::success(actor, "config.changed", format!("config:{key}"))
            .with_detail(json!({"value": value}));
        self.store.put_setting(key, &value, event).await?;
        Ok(SettingValue::resolve(spec, Some(value)))
    }

    pub async fn reset_setting(&self, actor: Actor, key: &str) -> Result<SettingValue, AppError> {
        let spec = known(key)?;
        let event = AuditEvent::success(actor, "config.reset", format!("config:{key}"));
        self.store.delete_setting(key, event).await?;
        Ok(SettingValue::resolve(spec, None))
    }
}

fn known(key: &str) -> Result<&'static SettingSpec, AppError> {
    spec(key).ok_or_else(|| {
        let shown = excerpt(key, 100);
        AppError::NotFound(format!("unknown setting {shown:?}"))
    })
}
