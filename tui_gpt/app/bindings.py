"""Every key binding of the app, in one place, each with an id for the keymap.

A person can remap any of them in `<data_dir>/keymap.json` ({"id": "keys"}),
which the app applies with `App.set_keymap`. Keys are chosen to reach the app
over SSH in common terminals: function keys (with alt+letter twins for
terminals that keep F1 for themselves) and ctrl+letters that neither the
text inputs nor the terminal take.
"""

from __future__ import annotations

from textual.binding import Binding

PANES = Binding.Group("Panes", compact=True)
MOVE = Binding.Group("Move", compact=True)

APP = [
    Binding("f1", "show_pane('prompt')", "Prompt", id="pane.prompt", group=PANES,
            tooltip="Prompt a model and read its completions"),
    Binding("f2", "show_pane('train')", "Train", id="pane.train", group=PANES,
            tooltip="Start, follow, stop and resume a training run"),
    Binding("f3", "show_pane('stats')", "Stats", id="pane.stats", group=PANES,
            tooltip="Loss and perplexity plots of one or more runs"),
    Binding("f4", "show_pane('runs')", "Runs", id="pane.runs", group=PANES,
            tooltip="Every run: open, prompt, resume or delete it"),
    Binding("f5", "show_pane('inspect')", "Inspect", id="pane.inspect", group=PANES,
            tooltip="Score a text and look inside the model: logit lens, attention, another model"),
    # For terminals that keep function keys for themselves. Alt+digit cannot serve: Textual
    # reads Esc+digit as macOS Option characters. Priority, or a focused text input would
    # take the letter.
    Binding("alt+p", "show_pane('prompt')", show=False, priority=True, id="pane.prompt.alt"),
    Binding("alt+t", "show_pane('train')", show=False, priority=True, id="pane.train.alt"),
    Binding("alt+s", "show_pane('stats')", show=False, priority=True, id="pane.stats.alt"),
    Binding("alt+r", "show_pane('runs')", show=False, priority=True, id="pane.runs.alt"),
    Binding("alt+i", "show_pane('inspect')", show=False, priority=True, id="pane.inspect.alt"),
    Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, tooltip="Quit (asks about runs still training)"),
]

PROMPT_INPUT = [
    Binding("enter", "submit", "Generate", id="prompt.generate", tooltip="Generate a completion of the prompt"),
    Binding("shift+enter,ctrl+j", "newline", "New line", id="prompt.newline", show=False),
]

PROMPT_PANE = [
    Binding("ctrl+o", "choose_model", "Model", id="prompt.choose_model", tooltip="Choose the model to prompt"),
    Binding("escape", "stop", "Stop", id="prompt.stop", tooltip="Stop generating, keeping what was generated"),
    Binding("ctrl+t", "inspect", "Tokens", id="prompt.inspect",
            tooltip="Inspect the tokens of the completions (or go back to the prompt)"),
]

TRANSCRIPT = [
    Binding("left", "move_token(-1)", "Previous token", id="tokens.previous", group=MOVE, key_display="←"),
    Binding("right", "move_token(1)", "Next token", id="tokens.next", group=MOVE, key_display="→"),
    Binding("up", "move_exchange(-1)", "Previous exchange", id="tokens.previous_exchange", group=MOVE,
            key_display="↑"),
    Binding("down", "move_exchange(1)", "Next exchange", id="tokens.next_exchange", group=MOVE, key_display="↓"),
    Binding("home", "first_token", "First token", id="tokens.first", show=False),
    Binding("end", "last_token", "Last token", id="tokens.last", show=False),
    Binding("c", "toggle_colours", "Colours", id="tokens.colours", tooltip="Colour tokens by their probability"),
    Binding("y", "copy", "Copy", id="tokens.copy", tooltip="Copy the selected completion to the clipboard"),
    Binding("x", "clear", "Clear", id="tokens.clear", tooltip="Clear this model's transcript (asks first)"),
    Binding("escape", "leave", "Back", id="tokens.leave", tooltip="Back to the prompt"),
    # Ctrl+T toggles: here it leads back (shown as Esc, to keep the footer within 80 columns).
    Binding("ctrl+t", "leave", "Back", id="tokens.toggle", show=False),
]

TRAIN_PANE = [
    Binding("ctrl+s", "start", "Start", id="train.start", tooltip="Start a new run with these settings"),
    Binding("ctrl+g", "stop", "Stop", id="train.stop", tooltip="Stop the run after its step, saving a checkpoint"),
    Binding("ctrl+r", "resume", "Resume", id="train.resume", tooltip="Resume the stopped run from its checkpoint"),
]

STATS_PANE = [
    Binding("x", "toggle_axis", "Steps/tokens", id="stats.axis", tooltip="Plot over steps or over tokens seen"),
    Binding("p", "toggle_metric", "Loss/ppl", id="stats.metric", tooltip="Plot the loss or the perplexity"),
]

RUNS_PANE = [
    Binding("s", "stats", "Stats", id="runs.stats", tooltip="Show the run's plots"),
    Binding("l", "prompt", "Prompt", id="runs.prompt", tooltip="Load the run's best checkpoint for prompting"),
    Binding("r", "resume", "Resume", id="runs.resume", tooltip="Resume the run in the train pane"),
    Binding("d,delete", "delete", "Delete", id="runs.delete", tooltip="Delete the run (asks first)"),
    Binding("e", "export", "Export", id="runs.export",
            tooltip="Export the run's best checkpoint as a Hugging Face folder under the data dir's exports/"),
]

INSPECT_PANE = [
    Binding("ctrl+s", "score", "Score", id="inspect.score", tooltip="Score the text: colour each token by its rank"),
    Binding("ctrl+o", "choose_model", "Model", id="inspect.choose_model", tooltip="Choose the model to inspect"),
    Binding("ctrl+l", "open_file", "Open", id="inspect.open", tooltip="Read the text from a file"),
]

INSPECT_TOKENS = [
    Binding("left", "move(-1)", "Previous token", id="inspect.previous", group=MOVE, key_display="←"),
    Binding("right", "move(1)", "Next token", id="inspect.next", group=MOVE, key_display="→"),
    Binding("up", "move(-10)", "Back 10 tokens", id="inspect.back", show=False),
    Binding("down", "move(10)", "On 10 tokens", id="inspect.on", show=False),
    Binding("home", "edge(False)", "First token", id="inspect.first", show=False),
    Binding("end", "edge(True)", "Last token", id="inspect.last", show=False),
    Binding("c", "colours", "Colours", id="inspect.colours", tooltip="Colour by rank, probability or the comparison"),
]

INSPECT_VIEWS = [  # on the pane, shown while the tokens have the focus
    Binding("t", "side('token')", "Token", id="inspect.token", tooltip="The selected token's odds"),
    Binding("l", "side('lens')", "Lens", id="inspect.lens", tooltip="Logit lens at the selected token"),
    Binding("a", "side('attention')", "Attn", id="inspect.attention",
            tooltip="The selected token's attention, per head"),
    Binding("h", "side('heads')", "Heads", id="inspect.heads", tooltip="Every head: where it looks (layers x heads)"),
    Binding("m", "compare", "Compare", id="inspect.compare", tooltip="Compare with a second model"),
    Binding("escape", "edit", "Edit", id="inspect.edit", tooltip="Back to the text"),
]

OPEN_FILE = [
    Binding("escape", "cancel", "Cancel", id="open.cancel"),
]

CONFIRM = [
    Binding("y", "answer(True)", "Yes", id="confirm.yes"),
    Binding("n,escape", "answer(False)", "No", id="confirm.no"),
]

QUIT_WHILE_TRAINING = [
    Binding("s", "choose('stop')", "Stop runs and quit", id="quit.stop"),
    Binding("l", "choose('leave')", "Leave running and quit", id="quit.leave"),
    Binding("escape", "choose(None)", "Cancel", id="quit.cancel"),
]

MODEL_PICKER = [
    Binding("escape", "cancel", "Cancel", id="picker.cancel"),
]
