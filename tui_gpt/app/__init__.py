"""The Textual app: a thin switchboard (`app`), its panes (`panes/`), dialogs (`screens/`) and services.

    app/panes/    one folder per pane, holding the widgets that live in it
    app/screens/  modal dialogs
    app/services/ what the panes use off screen: the engine loaded in the background,
                  generation jobs, training processes, run watching, transcripts, app state
    app/widgets/  small widgets shared by the panes
"""
