//! Integration tests: the real relay over real HTTP, the real RabbitMQ on
//! 127.0.0.1:5672, each test under its own random topology prefix.

mod amqps;
mod bad_input;
mod cli;
mod cluster;
mod compose;
mod confirm;
mod definitions;
mod deploy;
mod docs;
mod durability;
mod helpers;
mod ingress;
mod keys;
mod kubernetes;
mod layout;
mod limits;
mod observability;
mod process;
mod proxy;
mod publish;
mod replay;
mod replicated;
mod schema;
mod support;
mod tls;
mod traces;
