//! The JNI entry points behind `dev.lfmedge.LfmNative` (android/lfm/src/main/java),
//! which the Kotlin API (`LfmModel`, `LfmSession`) wraps. Handles cross as `long`s
//! holding a boxed `AppModel` or `SharedSession`; only those classes create, pass and
//! free them. Failures become a `dev.lfmedge.LfmException` carrying the `lfm_status`
//! code; an exception the token callback throws propagates as it is.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use jni::objects::{
    JClass, JIntArray, JObject, JObjectArray, JString, JThrowable, JValue, JValueOwned,
};
use jni::sys::{jboolean, jint, jintArray, jlong, jobjectArray};
use jni::JNIEnv;
use lfm_edge::{GenerateOptions, GpuOptions, LoadOptions, SamplerConfig};

use crate::chat_session::{stop_code, ChatSession, Outcome, Stream};
use crate::error::{FfiError, FfiResult, LfmStatus};
use crate::model::{backend, constraint, load_model, nonzero, tokenize, AppLoadOptions, AppModel};
use crate::shared_session::SharedSession;

const EXCEPTION_CLASS: &str = "dev/lfmedge/LfmException";

enum Failure {
    Lfm(FfiError),
    /// A JNI call failed; with `JavaException`, a Java exception is already pending.
    Jni(jni::errors::Error),
}

impl<E: Into<FfiError>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Lfm(error.into())
    }
}

fn jni_failure(error: jni::errors::Error) -> Failure {
    Failure::Jni(error)
}

type JniResult<T> = Result<T, Failure>;

/// Runs a native method's body: a failure or a panic becomes a pending Java exception
/// and the method returns `default` (which Java never sees).
fn entry<'local, T>(
    env: &mut JNIEnv<'local>,
    default: T,
    body: impl FnOnce(&mut JNIEnv<'local>) -> JniResult<T>,
) -> T {
    let failure = match panic::catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(Ok(value)) => return value,
        Ok(Err(failure)) => failure,
        Err(payload) => Failure::Lfm(FfiError::from_panic(&*payload)),
    };
    match failure {
        Failure::Jni(jni::errors::Error::JavaException) => {}
        Failure::Jni(error) => throw(env, LfmStatus::Internal, &format!("JNI: {error}")),
        Failure::Lfm(error) => throw(env, error.status(), &error.to_string()),
    }
    default
}

fn throw(env: &mut JNIEnv, status: LfmStatus, message: &str) {
    let thrown = (|| {
        let text = env.new_string(message)?;
        let exception = env.new_object(
            EXCEPTION_CLASS,
            "(ILjava/lang/String;)V",
            &[JValue::Int(status as jint), JValue::Object(&text)],
        )?;
        env.throw(JThrowable::from(exception))
    })();
    if thrown.is_err() {
        // The exception class itself is missing (stripped by R8?): still fail loudly.
        let _ = env.exception_clear();
        let _ = env.throw_new("java/lang/IllegalStateException", message);
    }
}

/// # Safety
/// `handle` is 0 or a live handle made by `handle_of` for a `T`.
unsafe fn from_handle<'a, T>(handle: jlong, what: &'static str) -> JniResult<&'a T> {
    (handle as *const T)
        .as_ref()
        .ok_or(Failure::Lfm(FfiError::Null(what)))
}

/// The model behind a `LfmModel` handle (which only the Java classes create and pass).
fn model_of<'a>(handle: jlong) -> JniResult<&'a AppModel> {
    unsafe { from_handle::<AppModel>(handle, "model handle") }
}

/// The session behind a `LfmSession` handle (which only the Java classes create and pass).
fn session_of<'a>(handle: jlong) -> JniResult<&'a SharedSession> {
    unsafe { from_handle::<SharedSession>(handle, "session handle") }
}

fn handle_of<T>(value: T) -> jlong {
    Box::into_raw(Box::new(value)) as jlong
}

/// The body of a `*Free` method: drops the `T` behind `handle` (0 is a no-op).
/// `handle` is 0 or a live handle made by `handle_of` for a `T`, freed once.
fn free_handle<T>(env: &mut JNIEnv, handle: jlong) {
    entry(env, (), |_| {
        if handle != 0 {
            drop(unsafe { Box::from_raw(handle as *mut T) });
        }
        Ok(())
    })
}

fn java_string(env: &mut JNIEnv, text: &JString, what: &'static str) -> JniResult<String> {
    if text.is_null() {
        return Err(FfiError::Null(what).into());
    }
    Ok(env.get_string(text).map_err(jni_failure)?.into())
}

/// A string Java may pass as null, meaning none.
fn optional_java_string(
    env: &mut JNIEnv,
    text: &JString,
    what: &'static str,
) -> JniResult<Option<String>> {
    match text.is_null() {
        true => Ok(None),
        false => java_string(env, text, what).map(Some),
    }
}

/// A count Java passes as a signed number: negative is an error naming it, never
/// "none" or "the default".
fn count<T: TryFrom<i64>>(value: impl Into<i64>, name: &str) -> JniResult<T> {
    let value = value.into();
    T::try_from(value).map_err(|_| {
        let why = if value < 0 {
            "is negative"
        } else {
            "is too large"
        };
        FfiError::InvalidArgument(format!("{name} {value} {why}")).into()
    })
}

/// The options in a `dev.lfmedge.GenerateParams`.
fn generate_options(env: &mut JNIEnv, params: &JObject) -> JniResult<GenerateOptions> {
    if params.is_null() {
        return Err(FfiError::Null("params").into());
    }
    let mut field =
        |name: &str, signature: &str| env.get_field(params, name, signature).map_err(jni_failure);
    let int = |value: JValueOwned| value.i().map_err(jni_failure);
    let float = |value: JValueOwned| value.f().map_err(jni_failure);
    let max_tokens = int(field("maxTokens", "I")?)?;
    let temperature = float(field("temperature", "F")?)?;
    let top_k = int(field("topK", "I")?)?;
    let top_p = float(field("topP", "F")?)?;
    let min_p = float(field("minP", "F")?)?;
    let repetition_penalty = float(field("repetitionPenalty", "F")?)?;
    let presence_penalty = float(field("presencePenalty", "F")?)?;
    let frequency_penalty = float(field("frequencyPenalty", "F")?)?;
    let penalty_window = int(field("penaltyWindow", "I")?)?;
    let seed = field("seed", "J")?.j().map_err(jni_failure)?;
    let ignore_eos = field("ignoreEos", "Z")?.z().map_err(jni_failure)?;
    let constraint_kind = int(field("constraintKind", "I")?)?;
    let constraint_text = JString::from(
        field("constraint", "Ljava/lang/String;")?
            .l()
            .map_err(jni_failure)?,
    );
    let stop = JObjectArray::from(
        field("stop", "[Ljava/lang/String;")?
            .l()
            .map_err(jni_failure)?,
    );
    let mut stop_strings = Vec::new();
    if !stop.is_null() {
        for i in 0..env.get_array_length(&stop).map_err(jni_failure)? {
            let text = JString::from(
                env.get_object_array_element(&stop, i)
                    .map_err(jni_failure)?,
            );
            stop_strings.push(java_string(env, &text, "a stop string")?);
            env.delete_local_ref(text).map_err(jni_failure)?;
        }
    }
    let constraint_text = if constraint_text.is_null() {
        None
    } else {
        Some(java_string(env, &constraint_text, "the constraint")?)
    };
    let constraint = constraint(
        count(constraint_kind, "constraintKind")?,
        "constraintKind",
        constraint_text.as_deref(),
    )?;
    Ok(GenerateOptions {
        max_tokens: count(max_tokens, "maxTokens")?,
        sampler: SamplerConfig {
            temperature,
            top_k: count(top_k, "topK")?,
            top_p,
            min_p,
            repetition_penalty,
            presence_penalty,
            frequency_penalty,
            penalty_window: count(penalty_window, "penaltyWindow")?,
            seed: seed as u64,
        },
        stop_strings,
        ignore_eos,
        constraint,
    })
}

/// Runs a generating call on a session, streaming to the Java `TokenCallback` (may be
/// null); returns the `StopReason` code.
fn generate_into(
    env: &mut JNIEnv,
    session: jlong,
    params: &JObject,
    callback: &JObject,
    body: impl FnOnce(&mut ChatSession, &GenerateOptions, Stream) -> FfiResult<Outcome>,
) -> JniResult<jint> {
    let options = generate_options(env, params)?;
    let shared = session_of(session)?;
    let mut chat = shared.lock()?;
    let mut callback_failure = None;
    let outcome = {
        let cancelled = || shared.cancelled();
        let mut on_token = |text: &str, token: Option<u32>| {
            if callback.is_null() {
                return true;
            }
            // -1: text held back for a stop string, let go at the end.
            let token = token.map_or(-1, |id| id as jint);
            match deliver(env, callback, text, token) {
                Ok(go_on) => go_on,
                Err(error) => {
                    callback_failure = Some(error);
                    false
                }
            }
        };
        body(
            &mut chat,
            &options,
            Stream {
                cancelled: &cancelled,
                on_token: &mut on_token,
            },
        )
    };
    if let Some(error) = callback_failure {
        return Err(Failure::Jni(error));
    }
    Ok(stop_code(outcome?.stop))
}

fn deliver(
    env: &mut JNIEnv,
    callback: &JObject,
    text: &str,
    token: jint,
) -> jni::errors::Result<bool> {
    let text = env.new_string(text)?;
    let go_on = env
        .call_method(
            callback,
            "onToken",
            "(Ljava/lang/String;I)Z",
            &[JValue::Object(&text), JValue::Int(token)],
        )?
        .z()?;
    // One local reference per token would overflow the frame in a long generation.
    env.delete_local_ref(text)?;
    Ok(go_on)
}

fn int_array(env: &mut JNIEnv, values: &[u32]) -> JniResult<jintArray> {
    let values: Vec<jint> = values.iter().map(|&v| v as jint).collect();
    let array = env
        .new_int_array(values.len() as jint)
        .map_err(jni_failure)?;
    env.set_int_array_region(&array, 0, &values)
        .map_err(jni_failure)?;
    Ok(array.into_raw())
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_modelLoad<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    path: JString<'l>,
    backend_code: jint,
    vram_budget_bytes: jlong,
    kv_pool_tokens: jint,
    max_binding_bytes: jlong,
    max_buffer_bytes: jlong,
) -> jlong {
    entry(&mut env, 0, |env| {
        let path = java_string(env, &path, "path")?;
        let options = AppLoadOptions {
            load: LoadOptions {
                gpu: GpuOptions {
                    backend: backend(backend_code)?,
                    max_binding_size: nonzero(count(max_binding_bytes, "maxBindingBytes")?),
                    max_buffer_size: nonzero(count(max_buffer_bytes, "maxBufferBytes")?),
                    ..GpuOptions::default()
                },
                vram_budget: nonzero(count(vram_budget_bytes, "vramBudgetBytes")?),
            },
            kv_pool_tokens: count(kv_pool_tokens, "kvPoolTokens")?,
        };
        Ok(handle_of(load_model(&path, &options)?))
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_modelFree<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    model: jlong,
) {
    free_handle::<AppModel>(&mut env, model)
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_tokenize<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    model: jlong,
    text: JString<'l>,
    add_special_tokens: jboolean,
) -> jintArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let model = model_of(model)?;
        let text = java_string(env, &text, "text")?;
        let ids = tokenize(&model.model, &text, add_special_tokens != 0)?;
        int_array(env, &ids)
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_sessionNew<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    model: jlong,
    context_length: jint,
    batch: jint,
) -> jlong {
    entry(&mut env, 0, |_| {
        let model = model_of(model)?;
        let chat = model.open_session(
            count(context_length, "contextLength")?,
            count(batch, "batch")?,
        )?;
        Ok(handle_of(SharedSession::new(chat)))
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_sessionFree<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
) {
    free_handle::<SharedSession>(&mut env, session)
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_sessionReset<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
) {
    entry(&mut env, (), |_| {
        session_of(session)?.lock()?.reset();
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_sessionSave<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
    path: JString<'l>,
) {
    with_file(&mut env, session, &path, |chat, path| chat.save(path))
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_sessionLoad<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
    path: JString<'l>,
) {
    with_file(&mut env, session, &path, ChatSession::load)
}

/// `op` on the session and the file at `path` (sessionSave, sessionLoad).
fn with_file<'l>(
    env: &mut JNIEnv<'l>,
    session: jlong,
    path: &JString<'l>,
    op: impl FnOnce(&mut ChatSession, &Path) -> FfiResult<()>,
) {
    entry(env, (), |env| {
        let path = java_string(env, path, "path")?;
        op(&mut *session_of(session)?.lock()?, Path::new(&path))?;
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_sessionCancel<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
) {
    entry(&mut env, (), |_| {
        session_of(session)?.cancel();
        Ok(())
    })
}

/// `{tokens held, capacity}`.
#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_sessionContext<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
) -> jintArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let shared = session_of(session)?;
        let chat = shared.lock()?;
        int_array(env, &[chat.tokens_held() as u32, chat.capacity() as u32])
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_generate<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
    prompt: JString<'l>,
    params: JObject<'l>,
    callback: JObject<'l>,
) -> jint {
    entry(&mut env, -1, |env| {
        let prompt = java_string(env, &prompt, "prompt")?;
        generate_into(env, session, &params, &callback, |chat, options, stream| {
            chat.generate_text(&prompt, options, stream)
        })
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_generateTokens<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
    tokens: JIntArray<'l>,
    params: JObject<'l>,
    callback: JObject<'l>,
) -> jint {
    entry(&mut env, -1, |env| {
        if tokens.is_null() {
            return Err(FfiError::Null("tokens").into());
        }
        let len = env.get_array_length(&tokens).map_err(jni_failure)?;
        let mut ids = vec![0; len as usize];
        env.get_int_array_region(&tokens, 0, &mut ids)
            .map_err(jni_failure)?;
        let ids = ids
            .into_iter()
            .map(|id| {
                u32::try_from(id)
                    .map_err(|_| FfiError::InvalidArgument(format!("token id {id} is negative")))
            })
            .collect::<Result<Vec<u32>, FfiError>>()?;
        generate_into(env, session, &params, &callback, |chat, options, stream| {
            chat.generate_tokens(&ids, options, stream)
        })
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_chatAdd<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
    role: JString<'l>,
    content: JString<'l>,
) {
    entry(&mut env, (), |env| {
        let role = java_string(env, &role, "role")?;
        let content = java_string(env, &content, "content")?;
        session_of(session)?.lock()?.add_message(&role, &content);
        Ok(())
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_chat<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
    role: JString<'l>,
    content: JString<'l>,
    params: JObject<'l>,
    callback: JObject<'l>,
) -> jint {
    entry(&mut env, -1, |env| {
        let role = java_string(env, &role, "role")?;
        let content = java_string(env, &content, "content")?;
        generate_into(env, session, &params, &callback, |chat, options, stream| {
            chat.chat(&role, &content, options, stream)
        })
    })
}

#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_chatSetTools<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
    tools: JString<'l>,
    choice: JString<'l>,
) {
    entry(&mut env, (), |env| {
        let tools = optional_java_string(env, &tools, "toolsJson")?;
        let choice = optional_java_string(env, &choice, "toolChoice")?;
        let choice = choice.as_deref().unwrap_or("auto");
        session_of(session)?
            .lock()?
            .set_tools(tools.as_deref(), choice)?;
        Ok(())
    })
}

/// The calls of the last chat reply as `{name, arguments, name, arguments, …}`, each
/// `arguments` a JSON object's text.
#[no_mangle]
pub extern "system" fn Java_dev_lfmedge_LfmNative_chatToolCalls<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    session: jlong,
) -> jobjectArray {
    entry(&mut env, std::ptr::null_mut(), |env| {
        let texts: Vec<String> = session_of(session)?
            .lock()?
            .tool_calls()
            .iter()
            .flat_map(|call| {
                let arguments = serde_json::Value::Object(call.arguments.clone());
                [call.name.clone(), arguments.to_string()]
            })
            .collect();
        let array = env
            .new_object_array(texts.len() as jint, "java/lang/String", JObject::null())
            .map_err(jni_failure)?;
        for (i, text) in texts.iter().enumerate() {
            let text = env.new_string(text).map_err(jni_failure)?;
            env.set_object_array_element(&array, i as jint, &text)
                .map_err(jni_failure)?;
            env.delete_local_ref(text).map_err(jni_failure)?;
        }
        Ok(array.into_raw())
    })
}
