//! The helper binary of the berth client library: started by the library, never by hand.

fn main() {
    berth_client::helper::main()
}
