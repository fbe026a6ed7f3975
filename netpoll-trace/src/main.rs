fn main() { println!("netpoll-trace placeholder"); }
