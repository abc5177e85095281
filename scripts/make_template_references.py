"""Copy the Qwen3 and Ministral 3 chat templates from llama.cpp's models/templates into
fixtures/templates/, and write fixtures/templates/rendered.json: conversations as
transformers' `apply_chat_template` renders them with each template (its
`render_jinja_template`, which apply_chat_template calls, with the bos and eos token
texts the tokenizer would pass). runtime/src/chat.rs's tests render the same ones.

    python scripts/make_template_references.py --llama-cpp .../vendor/llama.cpp

(with scripts/requirements.txt installed; see make_gguf_fixtures.py for the source).
"""

import argparse
import json
import shutil
from pathlib import Path

import jinja2
from transformers.utils.chat_template_utils import render_jinja_template

OUT_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "templates"

QWEN3 = "Qwen-Qwen3-0.6B.jinja"
MINISTRAL3 = "mistralai-Ministral-3-14B-Reasoning-2512.jinja"


def turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


ASKED_TWICE = [
    turn("system", "Be brief."),
    turn("user", "What is 2+2?"),
    turn("assistant", "<think>\nAdding two and two.\n</think>\n\n4"),
    turn("user", "And 3+3?"),
]

# (template, bos, eos, name, messages, add_generation_prompt, extra kwargs)
CASES = [
    (QWEN3, "", "<|im_end|>", "one user turn", [turn("user", "Hi")], True, {}),
    # Reasoning before the last user turn is dropped, only the answer stays.
    (QWEN3, "", "<|im_end|>", "earlier reasoning stripped", ASKED_TWICE, True, {}),
    # After the last user turn it is kept, re-wrapped.
    (
        QWEN3,
        "",
        "<|im_end|>",
        "last answer keeps its reasoning",
        ASKED_TWICE[:3],
        False,
        {},
    ),
    (
        QWEN3,
        "",
        "<|im_end|>",
        "tool results as one user turn",
        [
            turn("user", "Look it up."),
            turn("assistant", "Looking."),
            turn("tool", "42"),
            turn("tool", "43"),
        ],
        True,
        {},
    ),
    # What ChatTemplate cannot ask for yet: chat template kwargs.
    (QWEN3, "", "<|im_end|>", "thinking off", [turn("user", "Hi")], True, {"enable_thinking": False}),
    (MINISTRAL3, "<s>", "</s>", "default system prompt", [turn("user", "Hi")], True, {}),
    (
        MINISTRAL3,
        "<s>",
        "</s>",
        "system, answer and a second question",
        [
            turn("system", "Be brief."),
            turn("user", "What is 2+2?"),
            turn("assistant", "[THINK]Adding.[/THINK]4"),
            turn("user", "And 3+3?"),
        ],
        True,
        {},
    ),
    (
        MINISTRAL3,
        "<s>",
        "</s>",
        "tool result",
        [turn("user", "Look it up."), turn("assistant", "Looking."), turn("tool", "42")],
        False,
        {},
    ),
]

# Conversations the templates refuse, with the start of their message.
REFUSED = [
    (
        MINISTRAL3,
        [turn("user", "Hi"), turn("user", "Hi again")],
        "After the optional system message, conversation roles must alternate",
    ),
    (MINISTRAL3, [turn("user", "Hi"), turn("robot", "beep")], "Only user, assistant and tool roles"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="llama.cpp's source tree")
    args = parser.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name in [QWEN3, MINISTRAL3]:
        shutil.copy(args.llama_cpp / "models" / "templates" / name, OUT_DIR / name)
        sources[name] = (OUT_DIR / name).read_text(encoding="utf-8")

    rendered = []
    for template, bos, eos, name, messages, add_generation_prompt, kwargs in CASES:
        [text], _ = render_jinja_template(
            conversations=[messages],
            chat_template=sources[template],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos,
            eos_token=eos,
            **kwargs,
        )
        rendered.append(
            {
                "template": template,
                "name": name,
                "bos_token": bos,
                "eos_token": eos,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "kwargs": kwargs,
                "text": text,
            }
        )
    refused = []
    for template, messages, message in REFUSED:
        try:
            render_jinja_template(conversations=[messages], chat_template=sources[template], bos_token="<s>", eos_token="</s>")
        except jinja2.exceptions.TemplateError as e:
            assert str(e).startswith(message), e
            refused.append({"template": template, "messages": messages, "error": message})
        else:
            raise AssertionError(f"{template} accepted {messages}")
    out = {"made_by": "scripts/make_template_references.py", "rendered": rendered, "refused": refused}
    (OUT_DIR / "rendered.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
