"""A team dashboard's sign-in: each browser session reads the tracking server as its own MLflow user.

A dashboard started without MLFLOW_TRACKING_USERNAME, on a server behind MLflow's auth app, asks every session for
a user name and password before it shows anything; the credentials live in that session's state only
(state.signed_in) and every read is made with them (identity.py). Started with a user in its environment, it reads
as that user for everyone, as before.
"""

import requests
import streamlit as st

from core.store import (
    STORE_TIMEOUT_SECONDS,
    Credentials,
    answer_to,
    env_credentials,
    is_server,
    refused,
    shown_uri,
)
from dashboard import state
from dashboard.widgets import md

ASK_AGAIN_SECONDS = 60  # whether the server wants a user is asked again after this long


def needs_sign_in(uri: str) -> bool:
    """Whether sessions must sign in: no user in the dashboard's environment, and a server that wants one."""
    return is_server(uri) and env_credentials() is None and wants_a_user(uri)


@st.cache_data(ttl=ASK_AGAIN_SECONDS, show_spinner=False)
def wants_a_user(uri: str) -> bool:
    """Whether the server refuses a request without a user. An unreachable one is not asked for: its pages say in
    one line what is wrong."""
    try:
        return refused(uri, None, STORE_TIMEOUT_SECONDS)  # refused without a password to check: at once
    except requests.RequestException:
        return False


def sign_in_ui(uri: str) -> None:
    """The sidebar's user and Sign out once signed in; before that the form alone, and the page stops there. A
    refused user name or password is one line above the form."""
    if not needs_sign_in(uri):
        return
    signed_in = state.signed_in()
    if signed_in is not None:
        st.sidebar.caption(f"Signed in as **{md(signed_in.user)}**")
        if st.sidebar.button("Sign out"):
            state.sign_out()
            st.rerun()
        return
    st.title("Sign in")
    st.caption(f"This dashboard reads the tracking server at {md(shown_uri(uri))} as your own MLflow user.")
    problem = st.empty()
    with st.form(state.Key.SIGN_IN_FORM, clear_on_submit=True):
        user = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        problem.error(signed_in_or_why(uri, Credentials(user.strip(), password)))
    st.stop()


def signed_in_or_why(uri: str, credentials: Credentials) -> str:
    """Sign the session in with these credentials if the server takes them (the page then opens); else why not."""
    if not credentials.user:
        return "Enter your MLflow user name."
    try:
        status = answer_to(uri, credentials)
    except requests.RequestException as err:
        return f"The tracking server at {md(shown_uri(uri))} did not answer ({type(err).__name__}); try again."
    if status == 401:
        return f"The server refused the user name {md(credentials.user)} with that password."
    if status != 200:  # a server error has checked nothing: no sign-in on it
        return f"The tracking server could not check the password (HTTP {status}); try again."
    state.sign_in(credentials)
    st.rerun()
