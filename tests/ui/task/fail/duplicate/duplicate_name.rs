use qtasks::{QueueTasks, task};

#[task(name = "send")]
async fn send_email() {}

#[task(name = "send")]
async fn send_sms() {}

fn main() {
    let _app = QueueTasks::builder("dup").task::<SendEmail>().task::<SendSms>().build();
}
