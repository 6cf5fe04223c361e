//! Write the tiny test model (a 2-layer Llama with a byte-level tokenizer and a chat template)
//! as an HF directory: `cargo run --release --example tiny_model -- DIR`. Used by
//! scripts/reliability.sh to train for real in seconds.

#[path = "../tests/support/tiny_model.rs"]
mod tiny_model;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: tiny_model DIR");
        std::process::exit(2);
    };
    let params = tiny_model::tiny_model_dir(std::path::Path::new(&dir), true, 2);
    println!("{dir}: tiny model, {params} parameters");
}
