//! Helpers the code `#[task]` generates calls at run time: decoding JSON
//! arguments and running sync tasks on the blocking pool.

use super::TaskError;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes task arguments: an array (positional), an object (by parameter
/// name, and by position under the keys `"0"`, `"1"`, …, which is how a
/// Python call mixing positional and keyword arguments arrives), a bare
/// value for a one-parameter task, or `null`/`[]`/`{}` for a task without
/// parameters.
pub fn decode_args<A: DeserializeOwned>(args: &Value, params: &[&str]) -> Result<A, serde_json::Error> {
    use serde::de::Error as _;
    match args {
        Value::Array(a) if !params.is_empty() => {
            if a.len() > params.len() {
                return Err(serde_json::Error::custom(format!(
                    "{} positional argument(s) given; the parameters are {params:?}",
                    a.len()
                )));
            }
            if a.len() == params.len() {
                return A::deserialize(args);
            }
            // Fewer: the rest are `null`, which an `Option` parameter takes.
            let mut padded = a.clone();
            padded.resize(params.len(), Value::Null);
            A::deserialize(Value::Array(padded))
                .map_err(|e| serde_json::Error::custom(format!("missing argument(s) {:?}: {e}", &params[a.len()..])))
        }
        Value::Object(map) if !params.is_empty() => {
            let mut slots: Vec<Option<&Value>> = vec![None; params.len()];
            for (key, value) in map {
                let index = match key.parse::<usize>() {
                    Ok(i) if i < params.len() => i,
                    Ok(i) => {
                        return Err(serde_json::Error::custom(format!(
                            "{} positional argument(s) given; the parameters are {params:?}",
                            i + 1
                        )));
                    }
                    Err(_) => params.iter().position(|p| p == key).ok_or_else(|| {
                        serde_json::Error::custom(format!("unknown argument `{key}`; the parameters are {params:?}"))
                    })?,
                };
                if slots[index].replace(value).is_some() {
                    return Err(serde_json::Error::custom(format!(
                        "argument `{}` given twice (by position and by name)",
                        params[index]
                    )));
                }
            }
            let missing: Vec<&str> =
                params.iter().zip(&slots).filter(|(_, slot)| slot.is_none()).map(|(p, _)| *p).collect();
            let positional: Vec<Value> = slots.into_iter().map(|v| v.cloned().unwrap_or(Value::Null)).collect();
            // A missing argument is `null`: fine for an `Option` parameter.
            A::deserialize(Value::Array(positional)).map_err(|e| {
                if missing.is_empty() {
                    e
                } else {
                    serde_json::Error::custom(format!("missing argument(s) {missing:?}: {e}"))
                }
            })
        }
        Value::Null if params.is_empty() => A::deserialize(Value::Null),
        Value::Array(a) if a.is_empty() => A::deserialize(Value::Null),
        Value::Object(m) if m.is_empty() => A::deserialize(Value::Null),
        other if params.len() == 1 => A::deserialize(Value::Array(vec![other.clone()])),
        other => Err(serde_json::Error::custom(format!(
            "expected an array or an object of {} argument(s), found {}",
            params.len(),
            kind(other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Runs a sync task on the blocking pool; a panic becomes an error.
pub async fn run_blocking<R, F>(f: F) -> Result<R, TaskError>
where
    F: FnOnce() -> Result<R, TaskError> + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    // Counted until the thread returns, past a time limit or a cancel too.
    let thread = super::TaskContext::current().and_then(|ctx| ctx.enter_thread());
    let run = move || {
        let _thread = thread;
        span.in_scope(f)
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(TaskError::from_panic(e.into_panic())),
        Err(e) => Err(TaskError::msg(format!("blocking task did not finish: {e}"))),
    }
}

/// Wraps a plain return value as a task result.
#[inline(always)]
pub fn ok<T>(value: T) -> Result<T, TaskError> {
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::decode_args;
    use serde_json::json;

    const PARAMS: &[&str] = &["a", "b"];

    #[test]
    fn positions_and_names_mix() {
        let both: (i64, i64) = decode_args(&json!({"0": 2, "b": 3}), PARAMS).unwrap();
        assert_eq!(both, (2, 3));
        let named: (i64, i64) = decode_args(&json!({"b": 3, "a": 2}), PARAMS).unwrap();
        assert_eq!(named, (2, 3));
    }

    #[test]
    fn calls_that_do_not_fit_say_why() {
        let e = |args| decode_args::<(i64, i64)>(&args, PARAMS).unwrap_err().to_string();
        assert!(e(json!({"0": 2, "a": 3})).contains("argument `a` given twice"));
        assert!(e(json!({"0": 2, "2": 3})).contains("3 positional argument(s) given"));
        assert!(e(json!([1, 2, 3])).contains("3 positional argument(s) given"));
        assert!(e(json!({"0": 2})).contains("missing argument(s) [\"b\"]"));
        assert!(e(json!([2])).contains("missing argument(s) [\"b\"]"));
        let optional: (i64, Option<i64>) = decode_args(&json!([2]), PARAMS).unwrap();
        assert_eq!(optional, (2, None));
        assert!(e(json!({"0": 2, "c": 1})).contains("unknown argument `c`"));
    }
}
