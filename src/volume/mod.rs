//! STUB (replaced by the volume manager on merge).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::events::EventBus;

crate::module_error! {
    /// A volume failure.
    pub struct VolumeError;
}

pub struct VolumeService;

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: HashMap<String, String>,
    pub labels: HashMap<String, String>,
}

#[allow(unused_variables)]
impl VolumeService {
    pub fn open(
        data_root: &Path,
        events: Arc<EventBus>,
    ) -> Result<Arc<VolumeService>, VolumeError> {
        Ok(Arc::new(VolumeService))
    }
    pub fn create(
        &self,
        opts: CreateOptions,
    ) -> Result<bollard_stubs::models::Volume, VolumeError> {
        Err(VolumeError::internal("stub"))
    }
    pub fn get(&self, name: &str) -> Result<bollard_stubs::models::Volume, VolumeError> {
        Err(VolumeError::internal("stub"))
    }
    pub fn reference(&self, name: &str, container_id: &str) -> Result<(), VolumeError> {
        Ok(())
    }
    pub fn dereference(&self, name: &str, container_id: &str) {}
    pub fn mount(
        &self,
        name: &str,
        container_id: &str,
        destination: &str,
        rw: bool,
    ) -> Result<PathBuf, VolumeError> {
        Err(VolumeError::internal("stub"))
    }
    pub fn unmount(&self, name: &str, container_id: &str) {}
    pub fn remove(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        Ok(())
    }
}
