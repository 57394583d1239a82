use qtasks::task;

// The gwexample plugin also contributes a task named `fibonacci`.
#[task(name = "fibonacci")]
fn my_fibonacci(n: u64) -> u64 {
    n
}

qtasks::app! {
    pub type Maths = tasks[MyFibonacci], plugins[gwexample::GwExample];
}

fn main() {}
