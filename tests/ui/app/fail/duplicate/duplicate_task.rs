use qtasks::task;

#[task]
async fn send_email() {}

#[task(name = "send_email")]
async fn send_sms() {}

qtasks::app! {
    /// Two tasks under one name: `cargo check` reports it here.
    pub type Notifications = tasks[SendEmail, SendSms];
}

fn main() {}
