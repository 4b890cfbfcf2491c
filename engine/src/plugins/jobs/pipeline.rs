//! A pipeline, whatever its driver: its name and priority, how a job is pushed to it, and how
//! a worker's verdict on a job (ack, nack, requeue) is carried out. The `memory` driver keeps
//! jobs in this process; `amqp` keeps them in RabbitMQ.

use super::amqp::{self, Amqp};
use super::memory::Memory;
use super::queue::SharedQueue;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A job.
#[derive(Debug)]
pub struct Job {
    /// The pusher's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its headers (sorted, for a stable context).
    pub headers: BTreeMap<String, Vec<String>>,
    /// Lower runs first.
    pub priority: i64,
    /// Seconds it waited (or waits) before running.
    pub delay: u64,
    /// Acknowledged as it is taken, before it runs.
    pub auto_ack: bool,
    /// Its pipeline.
    pub pipeline: Arc<Pipeline>,
    /// What its driver needs to settle it.
    pub receipt: Receipt,
}

/// How a job that was taken is acknowledged to its driver.
#[derive(Debug)]
pub enum Receipt {
    /// Pushed, not taken yet (or held by the memory driver, which needs nothing).
    None,
    /// A RabbitMQ delivery.
    Amqp(amqp::Delivery),
}

/// What a worker's reply asks for (spec tcp-jobs B.6).
#[derive(Debug)]
pub enum Verdict {
    /// Done.
    Ack,
    /// Failed (a worker error, a crash, the pool failing).
    Nack,
    /// Failed, with the worker's choice: back to the queue (after `delay` seconds) or not.
    NackWith {
        /// Back to the queue.
        requeue: bool,
        /// Seconds before it runs again.
        delay: u64,
    },
    /// Back to the queue with these headers merged in, after `delay` seconds.
    Requeue {
        /// Headers that replace the job's of the same name.
        headers: BTreeMap<String, Vec<String>>,
        /// Seconds before it runs again.
        delay: u64,
    },
}

/// A pipeline's figures for `jobs.Stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStat {
    /// The queue it reads.
    pub queue: String,
    /// Jobs out (memory: in the shared queue or running; amqp: ready in the broker).
    pub active: u64,
    /// Jobs with a delay, not acknowledged.
    pub delayed: u64,
    /// Consuming.
    pub ready: bool,
}

/// Where a pipeline's jobs live.
#[derive(Debug)]
pub enum Driver {
    /// In this process.
    Memory(Memory),
    /// In RabbitMQ.
    Amqp(Amqp),
}

/// A pipeline.
#[derive(Debug)]
pub struct Pipeline {
    /// Its name.
    pub name: String,
    /// Its priority (jobs pushed with 0 take it).
    pub priority: i64,
    /// Its driver.
    pub driver: Driver,
}

impl Pipeline {
    /// A memory pipeline, not consuming yet.
    #[must_use]
    pub fn memory(name: &str, priority: i64, prefetch: u64) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            priority,
            driver: Driver::Memory(Memory::new(prefetch)),
        })
    }

    /// The driver's name, as rr reports it.
    #[must_use]
    pub fn driver_name(&self) -> &'static str {
        match self.driver {
            Driver::Memory(_) => "memory",
            Driver::Amqp(_) => "amqp",
        }
    }

    /// The queue the worker's context names (memory pipelines name none).
    #[must_use]
    pub fn queue_name(&self) -> Option<&str> {
        match &self.driver {
            Driver::Memory(_) => None,
            Driver::Amqp(amqp) => Some(amqp.queue_name()),
        }
    }

    /// Accepts jobs, in order (a priority 0 becomes the pipeline's).
    ///
    /// # Errors
    /// The driver's: a full or stopped pipeline, a broker that refused them. The jobs
    /// before the one refused were accepted.
    pub async fn push(
        self: &Arc<Self>,
        mut jobs: Vec<Job>,
        queue: &Arc<SharedQueue>,
    ) -> Result<(), String> {
        for job in &mut jobs {
            if job.priority == 0 {
                job.priority = self.priority;
            }
        }
        match &self.driver {
            Driver::Memory(memory) => jobs
                .into_iter()
                .try_for_each(|job| memory.push(self, job, queue)),
            Driver::Amqp(amqp) => amqp.publish(jobs).await,
        }
    }

    /// Carries out a worker's verdict on `job`, one of this pipeline's.
    ///
    /// # Errors
    /// The pipeline stopped meanwhile; the broker refused the ack or the republish.
    pub async fn settle(
        self: &Arc<Self>,
        job: Job,
        verdict: Verdict,
        queue: &Arc<SharedQueue>,
    ) -> Result<(), String> {
        match &self.driver {
            Driver::Memory(memory) => memory.settle(self, job, verdict, queue),
            Driver::Amqp(amqp) => amqp.settle(job, verdict).await,
        }
    }

    /// Starts consuming.
    ///
    /// # Errors
    /// It consumes already; the broker refused the queue.
    pub async fn run(self: &Arc<Self>, queue: &Arc<SharedQueue>) -> Result<(), String> {
        match &self.driver {
            Driver::Memory(memory) => memory.run(queue),
            Driver::Amqp(amqp) => amqp.run(self).await,
        }
    }

    /// Stops consuming (jobs already taken still run).
    ///
    /// # Errors
    /// It does not consume.
    pub async fn pause(&self) -> Result<(), String> {
        match &self.driver {
            Driver::Memory(memory) => memory.pause(),
            Driver::Amqp(amqp) => amqp.pause().await,
        }
    }

    /// Stops it for good: its jobs leave the shared queue; the memory driver drops what it
    /// holds, a broker gets back what was delivered and not acknowledged.
    pub async fn stop(&self, queue: &SharedQueue) {
        match &self.driver {
            Driver::Memory(memory) => {
                memory.stop();
                let removed = queue.remove_pipeline(self);
                memory.give_back(removed as u64);
            }
            Driver::Amqp(amqp) => {
                amqp.stop().await;
                queue.remove_pipeline(self);
            }
        }
    }

    /// True while `job`, taken from the shared queue, can still be settled with its driver:
    /// an amqp delivery of a connection that was replaced cannot (the broker delivers it
    /// again), so it is not run.
    #[must_use]
    pub fn is_live(&self, job: &Job) -> bool {
        match (&self.driver, &job.receipt) {
            (Driver::Amqp(amqp), Receipt::Amqp(delivery)) => amqp.is_live(delivery),
            _ => true,
        }
    }

    /// Its figures.
    ///
    /// # Errors
    /// The broker could not tell.
    pub async fn stat(&self) -> Result<PipelineStat, String> {
        match &self.driver {
            Driver::Memory(memory) => Ok(memory.stat(&self.name)),
            Driver::Amqp(amqp) => amqp.stat().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(pipeline: &Arc<Pipeline>, id: &str) -> Job {
        Job {
            id: id.into(),
            name: "J".into(),
            payload: Vec::new(),
            headers: BTreeMap::new(),
            priority: 0,
            delay: 0,
            auto_ack: false,
            pipeline: Arc::clone(pipeline),
            receipt: Receipt::None,
        }
    }

    /// A Destroy stops the old pipeline while a Declare of the same name may already have
    /// put a new one in the map and pushed to it: the stop takes out the old one's jobs only,
    /// and the old one's count of jobs out drops with them.
    #[test]
    fn stopping_a_pipeline_spares_the_jobs_of_a_new_one_of_the_same_name() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let queue = Arc::new(SharedQueue::new(100));
        let old = Pipeline::memory("same", 10, 10);
        let new = Pipeline::memory("same", 10, 10);
        runtime.block_on(async {
            old.run(&queue).await.unwrap();
            new.run(&queue).await.unwrap();
            old.push(vec![job(&old, "old-1"), job(&old, "old-2")], &queue)
                .await
                .unwrap();
            new.push(vec![job(&new, "new-1")], &queue).await.unwrap();
            old.stop(&queue).await;
        });
        assert_eq!(queue.len(), 1, "only the old pipeline's jobs leave");
        let left = runtime.block_on(queue.take());
        assert_eq!(left.id, "new-1");
        assert!(Arc::ptr_eq(&left.pipeline, &new));
        assert_eq!(runtime.block_on(old.stat()).unwrap().active, 0);
        assert_eq!(runtime.block_on(new.stat()).unwrap().active, 1);
    }
}
