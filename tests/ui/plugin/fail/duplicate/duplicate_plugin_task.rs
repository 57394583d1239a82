use qtasks::{QueueTasks, task};

// The gwexample plugin also contributes a task named `fibonacci`.
#[task(name = "fibonacci")]
fn my_fibonacci(n: u64) -> u64 {
    n
}

fn main() {
    let _app = QueueTasks::builder("dup").task::<MyFibonacci>().plugin(gwexample::GwExample).build();
}
