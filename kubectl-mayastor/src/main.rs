fn main() {
    eprintln!("kubectl-mayastor: not built yet");
    std::process::exit(1);
}
