//! A pool of ready policy instances for one policy version.
//!
//! Evaluation is synchronous and may come from any thread. Each instance is single-threaded
//! (`&mut`), so threads take one from a lock-free queue, evaluate, and put it back; when the
//! queue is empty a new instance is made from the already-compiled module (no recompile).
//! An instance whose evaluation failed is dropped rather than returned: after a trap its heap
//! state is not trusted.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use serde_json::Value;

use crate::abi::{AbiError, CompiledPolicy, PolicyInstance};

pub struct InstancePool {
    compiled: Arc<CompiledPolicy>,
    data_json: Arc<[u8]>,
    idle: ArrayQueue<PolicyInstance>,
}

impl InstancePool {
    /// Make `warm` instances up front (at least one: it proves the data loads), keeping up to
    /// `capacity` idle ones afterwards.
    pub fn new(
        compiled: Arc<CompiledPolicy>,
        data_json: Arc<[u8]>,
        warm: usize,
        capacity: usize,
    ) -> Result<Self, AbiError> {
        let pool = Self {
            idle: ArrayQueue::new(capacity.max(1)),
            compiled,
            data_json,
        };
        for _ in 0..warm.clamp(1, capacity.max(1)) {
            let instance = pool.compiled.instantiate(&pool.data_json)?;
            let _ = pool.idle.push(instance);
        }
        Ok(pool)
    }

    /// Evaluate `entrypoint` with an input document given as JSON text.
    pub fn evaluate(
        &self,
        entrypoint: &str,
        input_json: Option<&[u8]>,
    ) -> Result<Option<Value>, AbiError> {
        let id = self.compiled.entrypoint_id(entrypoint)?;
        let mut instance = match self.idle.pop() {
            Some(instance) => instance,
            None => self.compiled.instantiate(&self.data_json)?,
        };
        let result = instance.evaluate(id, input_json);
        if result.is_ok() {
            // A full queue means enough idle instances exist: drop this one.
            let _ = self.idle.push(instance);
        }
        result
    }
}
