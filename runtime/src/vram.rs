//! A VRAM budget shared by what a process puts on the GPU: a model's weights, KV pools
//! and sessions each reserve their bytes before allocating them and give them back when
//! dropped, so that however many sessions an app opens, it stays within what it was
//! given. [`crate::MemoryPlan`] answers the same question ahead of time, for `info`.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::units::format_size;

#[derive(Debug)]
pub struct VramBudget {
    total: u64,
    used: Mutex<u64>,
}

/// Bytes taken from a budget until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<VramBudget>,
    bytes: u64,
}

impl VramBudget {
    pub fn new(total: u64) -> Arc<VramBudget> {
        Arc::new(VramBudget {
            total,
            used: Mutex::new(0),
        })
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn available(&self) -> u64 {
        self.total.saturating_sub(self.used())
    }

    /// Takes `bytes` for `what`, or an error with the numbers.
    pub fn reserve(self: &Arc<Self>, what: &str, bytes: u64) -> Result<Reservation> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let left = self.total.saturating_sub(*used);
        if bytes > left {
            return Err(Error::Budget {
                budget: self.total,
                message: format!(
                    "{what} needs {bytes} bytes ({}), {} more than the {left} bytes left ({} in use)",
                    format_size(bytes),
                    format_size(bytes - left),
                    format_size(*used)
                ),
            });
        }
        *used += bytes;
        Ok(Reservation {
            budget: self.clone(),
            bytes,
        })
    }
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn budget(&self) -> &Arc<VramBudget> {
        &self.budget
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= self.bytes;
    }
}
