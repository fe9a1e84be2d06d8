"""Classes and their members (SPEC §12): the records and the `ClassStore` interface.

A class has a unique name (case-insensitively), an optional join code (stored upper-cased,
unique) and members, each a class `teacher` or a class `student`. A channel belongs to at most
one class (`Channel.class_id`); deleting a class deletes its channels and their messages.
The rules (who may do what, who sees which channel) are plp/classes/'s; this is only storage.
"""

from __future__ import annotations

import abc
import datetime as _dt
from dataclasses import dataclass

from .base import Channel, StorageError, User, iso

CLASS_ROLES = ("teacher", "student")


class ClassNameTaken(StorageError):
    """A class with that name (case-insensitively) exists."""


class JoinCodeTaken(StorageError):
    """Another class holds that join code (a fresh random code met an old one: try again)."""


@dataclass(frozen=True, slots=True)
class SchoolClass:
    """A class, with how many members it has when it was read."""

    id: int
    name: str
    join_code: str | None
    created_by: int | None
    created_at: _dt.datetime
    member_count: int = 0

    def to_json(self, *, my_role: str | None, show_code: bool) -> dict:
        """The class as SPEC §12 shows it; `joinCode` only when `show_code` (teachers, admins)."""
        data = {
            "id": self.id,
            "name": self.name,
            "createdBy": self.created_by,
            "createdAt": iso(self.created_at),
            "memberCount": self.member_count,
            "myRole": my_role,
        }
        if show_code:
            data["joinCode"] = self.join_code
        return data


@dataclass(frozen=True, slots=True)
class ClassMember:
    """A member of a class: the account and its class role."""

    user: User
    class_role: str

    def to_json(self) -> dict:
        return {**self.user.to_json(), "classRole": self.class_role}


class ClassStore(abc.ABC):
    """Classes, their members and their channels' membership rule, as storage."""

    @abc.abstractmethod
    async def create_class(self, name: str, creator_id: int, join_code: str) -> SchoolClass:
        """Insert a class with its creator as its teacher, in one transaction.

        ClassNameTaken: the name (case-insensitively) exists; JoinCodeTaken: the code does.
        """

    @abc.abstractmethod
    async def get_class(self, class_id: int) -> SchoolClass | None:
        """The class with that id, or None."""

    @abc.abstractmethod
    async def list_classes(self) -> list[SchoolClass]:
        """Every class, by name."""

    @abc.abstractmethod
    async def classes_of(self, user_id: int) -> list[tuple[SchoolClass, str]]:
        """The user's classes with their class role, by name."""

    @abc.abstractmethod
    async def rename_class(self, class_id: int, name: str) -> SchoolClass:
        """Rename; NotFound if there is no such class, ClassNameTaken if the name is taken."""

    @abc.abstractmethod
    async def delete_class(self, class_id: int) -> list[int] | None:
        """Delete a class, its members, channels and their messages, in one transaction.

        The ids of the channels deleted with it; None if there was no such class.
        """

    @abc.abstractmethod
    async def set_join_code(self, class_id: int, code: str | None) -> bool:
        """Replace the class's join code (None: joining closed); False if no such class.

        JoinCodeTaken if another class holds the code.
        """

    @abc.abstractmethod
    async def class_by_code(self, code: str) -> SchoolClass | None:
        """The class whose join code is `code` (upper-cased already), or None."""

    @abc.abstractmethod
    async def class_role(self, class_id: int, user_id: int) -> str | None:
        """The user's class role in the class, or None if not a member."""

    @abc.abstractmethod
    async def add_member(self, class_id: int, user_id: int, class_role: str) -> str | None:
        """Make the user a member with this role (a member already: role changed).

        The role the user had before (None: new member). NotFound: no such class or user.
        """

    @abc.abstractmethod
    async def join_class(self, class_id: int, user_id: int) -> bool:
        """Add the user as a class student unless a member already; True if added."""

    @abc.abstractmethod
    async def remove_member(self, class_id: int, user_id: int) -> bool:
        """Remove a member; False if the user was not one."""

    @abc.abstractmethod
    async def list_members(self, class_id: int) -> list[ClassMember]:
        """The class's members: teachers first, then by username."""

    @abc.abstractmethod
    async def class_channel_ids(self, class_id: int) -> list[int]:
        """The ids of the class's channels."""

    @abc.abstractmethod
    async def channels_for(self, user_id: int) -> list[Channel]:
        """The channels a non-admin user sees: school-wide ones and their classes', by id."""

    @abc.abstractmethod
    async def teaches_student(self, teacher_id: int, student_id: int) -> bool:
        """Whether `student_id` is a class student of a class where `teacher_id` is a class
        teacher (the reach of a teacher over pupils, e.g. for reset codes)."""
